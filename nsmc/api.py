"""A plain JSON API beside the Gradio page: one POST, one JSON answer, for programs.

    POST /api/predict   {"text": "정말 재밌었다"}  or  {"texts": ["정말 재밌었다", "시간 아깝다"]}
      -> {"model": "nsmc-small",
          "predictions": [{"label": "positive", "scores": {"negative": 0.03, "positive": 0.97},
                           "truncated": false}]}
    GET  /api/health    -> {"status": "ok", "model": ..., "runtime": ..., "labels": [...]}

It skips Gradio's queue and event stream, most of a small model's cost per request (bench/RESULTS.md,
`## Load`). Same limits and rows as the page (nsmc.uploads, nsmc.inference.rows); a blank text gets
`label: null` and a note; a full line of requests answers 503 with Retry-After; with a login
(`--auth`) both routes want the same USER:PASSWORD as HTTP Basic.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from nsmc.batcher import Busy
from nsmc.errors import UserError
from nsmc.corpus import as_text
from nsmc.inference import rows
from nsmc.uploads import MAX_BYTES, MAX_ROWS, check_rows

BLANK = "blank review: nothing to classify"
log = logging.getLogger(__name__)


def parse_login(value: str | None) -> tuple[str, str] | None:
    """USER:PASSWORD as a (user, password) pair; None for no login."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not (sep and user and password):
        raise UserError("--auth (or GRADIO_AUTH) must look like USER:PASSWORD.")
    return user, password


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers


def _check_login(request: Request, auth: tuple[str, str] | None) -> None:
    if auth is None:
        return
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user = password = ""
    # compare_digest on both parts, always: the time taken says nothing about which part was wrong.
    ok = (secrets.compare_digest(user.encode(), auth[0].encode())
          & secrets.compare_digest(password.encode(), auth[1].encode()))
    if scheme.lower() != "basic" or not ok:
        raise Refused(401, "login required: send the app's USER:PASSWORD as HTTP Basic auth "
                           "(curl -u USER:PASSWORD)",
                      {"WWW-Authenticate": 'Basic realm="nsmc"'})


async def _read_json(request: Request, max_bytes: int):
    """The body as JSON, read no further than max_bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise Refused(413, f"body of {int(length):,} bytes: the limit is {max_bytes:,}")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise Refused(413, f"body over {max_bytes:,} bytes")
    except ClientDisconnect:  # the caller left mid-body: nobody to answer, nothing went wrong here
        raise Refused(400, "the client closed the connection before sending the whole body") from None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise Refused(400, 'body is not JSON: send {"text": "..."} or {"texts": ["...", ...]}') from None


def _texts(payload, max_rows: int) -> list[str]:
    if isinstance(payload, dict) and "texts" in payload and isinstance(payload["texts"], list):
        values = payload["texts"]
    elif isinstance(payload, dict) and "text" in payload:
        values = [payload["text"]]
    else:
        raise Refused(422, 'send {"text": "one review"} or {"texts": ["a review", "another", ...]}')
    try:
        check_rows(len(values), max_rows)
    except UserError as e:
        raise Refused(413, str(e)) from None
    return [as_text(v) for v in values]


def routes(classifier, auth: tuple[str, str] | None = None, max_rows: int = MAX_ROWS,
           max_bytes: int = MAX_BYTES) -> list[Route]:
    """The two routes, for `demo.launch(app_kwargs={"routes": ...})` or any Starlette app.
    `classifier`: a nsmc.inference.TextClassifier (submit, label_names, name, runtime)."""
    names = classifier.label_names

    def answer(row: dict) -> dict:
        if not row["label"]:
            return {"label": None, "scores": None, "truncated": False, "note": BLANK}
        return {"label": row["label"], "scores": {n: row[n] for n in names}, "truncated": row["truncated"]}

    async def predict(request: Request) -> JSONResponse:
        try:
            _check_login(request, auth)
            texts = _texts(await _read_json(request, max_bytes), max_rows)
            probs = await asyncio.wrap_future(classifier.submit(texts))
        except Refused as e:
            return JSONResponse({"error": str(e)}, e.status, e.headers)
        except Busy as e:
            return JSONResponse({"error": str(e)}, 503, {"Retry-After": "1"})
        except Exception as e:  # the model failed: the caller gets a message, the log gets the traceback
            log.exception("scoring failed")
            return JSONResponse({"error": f"could not score these reviews ({type(e).__name__}); "
                                          "the server log has details"}, 500)
        predictions = [answer(row) for row in rows(texts, probs, names, digits=6)]
        return JSONResponse({"model": classifier.name, "predictions": predictions})

    async def health(request: Request) -> JSONResponse:
        try:
            _check_login(request, auth)
        except Refused as e:
            return JSONResponse({"error": str(e)}, e.status, e.headers)
        return JSONResponse({"status": "ok", "model": classifier.name, "runtime": classifier.runtime.name,
                             "labels": names})

    return [Route("/api/predict", predict, methods=["POST"]), Route("/api/health", health, methods=["GET"])]
