"""Guards around the served app that Gradio does not give: body limits, login first, bounded connections,
quiet logs, clean exits. `launch(demo, ...)` is `demo.launch(...)` with all of them switched on.

- `Guard`: pure ASGI middleware, one pass over the headers per request. A body over its limit is refused
  with 413 before it is read (Content-Length), or as soon as the limit is passed (chunked); with a login
  set, a request without it gets 401 before its body is read, and the login page loses the API listing.
- `watch_connections`: at most `max_connections` open connections (the oldest idle one is closed to make
  room), and a connection that has no request in flight and starts none within `header_timeout` seconds
  is closed (idle sockets, headers sent a byte at a time).
- `RepeatFilter`: the same error logged at most once per interval, with a count of what was dropped.
- `temp_folder`: folders removed at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import binascii
import json
import logging
import os
import re
import resource
import secrets
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from starlette.middleware import Middleware
from starlette.requests import cookie_parser

from nsmc.uploads import MAX_BYTES

UPLOAD_PATH = "/gradio_api/upload"
MULTIPART_SLACK = 2**20  # part headers and boundaries around the files of one upload request
HEADER_TIMEOUT = 10.0  # seconds a connection may sit without a request in flight
DRAIN_BYTES, DRAIN_IDLE = 32 * 2**20, 1.0  # what a refused request may still send, and how slowly
# What the login page itself loads; everything else wants the login (Gradio leaves a few API routes open).
PUBLIC_PATHS = {"/", "/login", "/login/", "/logout", "/favicon.ico", "/robots.txt", "/manifest.json",
                "/theme.css", "/gradio_api/theme.css", "/gradio_api/login_check", "/gradio_api/login_check/",
                "/gradio_api/startup-events"}  # launch() calls it, once, without a login
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
API_INFO = re.compile(rb"<script>window\.gradio_api_info = .*?;</script>", re.S)
NO_API_INFO = b'<script>window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>'


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def _refuse(receive, send, status: int, message: str, headers: tuple = ()) -> None:
    """Answer at once, then read and drop what the client is still sending (up to DRAIN_BYTES, while it keeps
    coming), so that a client that reads only after sending sees the answer instead of a reset connection."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": True})
    drained = 0
    while drained <= DRAIN_BYTES:
        try:
            message = await asyncio.wait_for(receive(), DRAIN_IDLE)
        except asyncio.TimeoutError:
            break
        if not message.get("more_body"):
            break
        drained += len(message.get("body", b""))
    await send({"type": "http.response.body", "body": b""})


class Guard:
    """ASGI middleware for a Gradio app; `auth` is the (user, password) given to `launch`, or None."""

    def __init__(self, app, auth: tuple[str, str] | None = None, max_body: int = MAX_BYTES,
                 max_upload: int = MAX_BYTES):
        self.app, self.auth, self.max_body, self.max_upload = app, auth, max_body, max_upload

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        logged_in = self.auth is None or self._logged_in(scope)
        if not logged_in and path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
            basic = ((b"www-authenticate", b'Basic realm="nsmc"'),) if path.startswith("/api/") else ()
            return await _refuse(receive, send, 401, "login required: log in on the page, or send "
                                 "USER:PASSWORD as HTTP Basic auth (curl -u USER:PASSWORD)", basic)
        limit = self.max_upload if path.rstrip("/") == UPLOAD_PATH else self.max_body
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            message = f"request body of {int(length):,} bytes: the limit is {limit:,}"
            return await _refuse(receive, send, 413, message)
        if not logged_in and scope["method"] == "GET":  # the login page: no list of endpoints for strangers
            send = _without_api_info(send)
        if length is not None or _header(scope, b"transfer-encoding") is None:
            return await self.app(scope, receive, send)  # uvicorn reads no further than Content-Length
        await _limited(self.app, scope, receive, send, limit)  # chunked: count while the app reads

    def _logged_in(self, scope) -> bool:
        app = scope.get("app")
        cookies = cookie_parser((_header(scope, b"cookie") or b"").decode("latin-1"))
        token = cookies.get(f"access-token-{app.cookie_id}") or \
            cookies.get(f"access-token-unsecure-{app.cookie_id}")
        if token and app.tokens.get(token) is not None:  # Gradio's own login (routes.App, gradio 6.31)
            return True
        scheme, _, encoded = (_header(scope, b"authorization") or b"").decode("latin-1").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok = secrets.compare_digest(user.encode(), self.auth[0].encode()) & \
            secrets.compare_digest(password.encode(), self.auth[1].encode())
        return scheme.lower() == "basic" and ok


async def _limited(app, scope, receive, send, limit: int) -> None:
    """Run app, refusing with 413 (and dropping whatever app answers) once the body passes limit. To the
    app, the client seems to have left: it stops reading, and no handler logs an error."""
    received, tripped, started = 0, False, False

    async def receive_limited():
        nonlocal received, tripped
        message = {"type": "http.disconnect"} if tripped else await receive()
        received += len(message.get("body", b""))
        if received > limit:
            tripped = True
            return {"type": "http.disconnect"}
        return message

    async def send_checked(message):
        nonlocal started
        if not tripped:
            started = started or message["type"] == "http.response.start"
            await send(message)

    try:
        await app(scope, receive_limited, send_checked)
    except Exception:
        if not tripped:
            raise  # otherwise the app only failed on the disconnect we made up (starlette's ClientDisconnect)
    if tripped and not started:
        await _refuse(receive, send, 413, f"request body over {limit:,} bytes")


def _without_api_info(send):
    """send, with an HTML answer's `window.gradio_api_info` emptied (the page is buffered: a few KB)."""
    start, chunks = None, []

    async def send_stripped(message):
        nonlocal start
        if message["type"] == "http.response.start":
            if not dict(message["headers"]).get(b"content-type", b"").startswith(b"text/html"):
                return await send(message)
            start = message
            return
        if start is None:
            return await send(message)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            body = API_INFO.sub(NO_API_INFO, b"".join(chunks))
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

    return send_stripped


class _Connections(set):
    """Stands in for uvicorn's `ServerState.connections`, the set each connection adds itself to."""

    def __init__(self, max_connections: int, header_timeout: float):
        super().__init__()
        self.max_connections, self.header_timeout = max_connections, header_timeout
        self.opened: dict = {}  # insertion order = age

    def add(self, protocol) -> None:
        super().add(protocol)
        self.opened[protocol] = None
        loop = asyncio.get_running_loop()  # connection_made runs on the server's loop
        loop.call_soon(self._admit, protocol, loop)  # after connection_made has set protocol.transport

    def discard(self, protocol) -> None:
        super().discard(protocol)
        self.opened.pop(protocol, None)

    def _admit(self, protocol, loop) -> None:
        if len(self) > self.max_connections:  # cheap test first; some may be closing already
            still_open = [p for p in self.opened if not p.transport.is_closing()]
            if len(still_open) > self.max_connections:
                next((p for p in still_open if _idle(p)), protocol).transport.close()
        loop.call_later(self.header_timeout, self._check, protocol, loop, None)

    def _check(self, protocol, loop, cycle_seen) -> None:
        if protocol not in self:
            return
        cycle = getattr(protocol, "cycle", False)
        if _idle(protocol) and cycle is cycle_seen:  # no request started since the last look
            protocol.transport.close()
        else:
            loop.call_later(self.header_timeout, self._check, protocol, loop, cycle)


def _idle(protocol) -> bool:
    """No request in flight: none started yet, or the last one answered (uvicorn's HTTP protocols)."""
    cycle = getattr(protocol, "cycle", False)  # websockets have no cycle: never idle
    return cycle is None or (cycle is not False and cycle.response_complete)


def default_max_connections() -> int:
    """Half the process's file-descriptor limit (the rest: model files, threads, uploads), at most 1,000."""
    return min(1000, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2)


def watch_connections(server, max_connections: int, header_timeout: float = HEADER_TIMEOUT) -> None:
    """Bound a running uvicorn.Server's connections. Gradio 6.31 builds its uvicorn Config itself with no way
    to pass limit_concurrency or timeouts (http_server.start_server), and uvicorn has no connection cap or
    header timeout at all, so this takes over the set each uvicorn protocol registers with (uvicorn 0.54)."""
    server.server_state.connections = _Connections(max_connections, header_timeout)


class RepeatFilter(logging.Filter):
    """Let a message (same logger, template and exception type) through at most once per `interval` s."""

    def __init__(self, interval: float = 60.0):
        super().__init__()
        self.interval, self.last, self.dropped, self.lock = interval, {}, {}, threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg, record.exc_info and record.exc_info[0])
        now = time.monotonic()
        with self.lock:
            if now - self.last.get(key, -self.interval) < self.interval:
                self.dropped[key] = self.dropped.get(key, 0) + 1
                return False
            self.last[key] = now
            dropped = self.dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.msg} ({dropped:,} more like this in the last {self.interval:.0f} s)"
        return True


def quiet_repeats(interval: float = 60.0, loggers=("asyncio", "uvicorn.error", "nsmc.api")) -> None:
    """Rate-limit repeated errors (e.g. "Too many open files" on every accept) on the server's loggers."""
    repeat = RepeatFilter(interval)
    for name in loggers:
        logging.getLogger(name).addFilter(repeat)


_TEMP_FOLDERS: list[Path] = []


def temp_folder(prefix: str) -> Path:
    """A new temporary folder, removed at exit (also on SIGTERM/SIGINT once `launch` has run)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    _TEMP_FOLDERS.append(path)
    return path


def _stop(signum, frame) -> None:
    """SIGTERM/SIGINT: remove the temporary folders and leave at once. Gradio's own Ctrl-C path waits 5 s for
    open event streams and Python's shutdown with torch's threads 2-5 s more, past what many supervisors
    wait before SIGKILL, which would leave the folders behind."""
    for path in _TEMP_FOLDERS:
        shutil.rmtree(path, ignore_errors=True)
    print(f"Stopped ({signal.Signals(signum).name}); temporary files removed.", flush=True)
    os._exit(0)


def private_gradio_cache() -> None:
    """Give Gradio an upload cache of this process's own (the default /tmp/gradio is shared by every
    Gradio app), so exit can remove it whole. Call before building the Blocks: components read it then."""
    if "GRADIO_TEMP_DIR" not in os.environ:
        os.environ["GRADIO_TEMP_DIR"] = str(temp_folder("nsmc-gradio-"))


def launch(demo, max_body: int = MAX_BYTES, max_connections: int | None = None,
           header_timeout: float | None = None, **launch_kwargs) -> None:
    """`demo.launch(**launch_kwargs)` with every guard: the body limits (uploads: `max_file_size` for the
    whole request), login before bodies, bounded connections, rate-limited error logs, and a SIGTERM or
    SIGINT that removes the temporary folders before leaving. NSMC_MAX_CONNECTIONS and
    NSMC_HEADER_TIMEOUT override the connection settings."""
    max_upload = int(launch_kwargs.get("max_file_size") or max_body) + MULTIPART_SLACK  # bytes
    app_kwargs = dict(launch_kwargs.pop("app_kwargs", None) or {})
    app_kwargs.setdefault("openapi_url", None)  # FastAPI's schema of Gradio's internal routes: not needed
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []),
                                Middleware(Guard, auth=launch_kwargs.get("auth"), max_body=max_body,
                                           max_upload=max_upload)]
    demo.launch(app_kwargs=app_kwargs, **{"prevent_thread_lock": True, **launch_kwargs})
    max_connections = max_connections or default_max_connections()
    max_connections = int(os.environ.get("NSMC_MAX_CONNECTIONS", max_connections))
    watch_connections(demo.server, max_connections,
                      float(os.environ.get("NSMC_HEADER_TIMEOUT", header_timeout or HEADER_TIMEOUT)))
    quiet_repeats()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
