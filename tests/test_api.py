"""nsmc.api: the JSON routes on their own (Starlette's test client), with a tiny model."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.testclient import TestClient

from concurrent.futures import Future

from nsmc.api import BLANK, routes
from nsmc.batcher import Busy
from nsmc.inference import MAX_CHARS, TextClassifier


@pytest.fixture(scope="module")
def clf(tiny_model_dir):
    return TextClassifier.load(tiny_model_dir, runtime="torch")


class Failing:
    """The classifier, except that `submit` fails the way `fail(texts)` says (or passes through)."""

    def __init__(self, clf, fail):
        self.clf, self.fail = clf, fail
        self.name, self.runtime, self.label_names = clf.name, clf.runtime, clf.label_names

    def submit(self, texts):
        error = self.fail(texts)
        if error is None:
            return self.clf.submit(texts)
        if isinstance(error, Busy):
            raise error
        future = Future()
        future.set_exception(error)
        return future


def client_for(clf, auth=None, **limits) -> TestClient:
    return TestClient(Starlette(routes=routes(clf, auth, **limits)))


@pytest.fixture(scope="module")
def client(clf):
    return client_for(clf)


def test_one_review(client, clf):
    r = client.post("/api/predict", json={"text": "정말 재밌었다"})
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == clf.name
    [p] = body["predictions"]
    assert set(p["scores"]) == {"negative", "positive"}
    assert sum(p["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert p["label"] == max(p["scores"], key=p["scores"].get)
    expected = clf.predict_proba(["정말 재밌었다"])[0]
    assert [p["scores"]["negative"], p["scores"]["positive"]] == pytest.approx(expected.tolist(), abs=1e-5)
    assert p["truncated"] is False


def test_many_reviews_in_order_with_blanks_answered(client, clf):
    texts = ["정말 재밌었다", "", "   ", None, 12345, "시간 아깝다", "\udc00 깨진"]
    r = client.post("/api/predict", content=json.dumps({"texts": texts}))
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert len(preds) == len(texts)
    for i in (1, 2, 3):
        assert preds[i] == {"label": None, "scores": None, "truncated": False, "note": BLANK}
    scored = [preds[i]["scores"] for i in (0, 4, 5, 6)]
    assert all(sum(s.values()) == pytest.approx(1.0, abs=1e-5) for s in scored)
    expected = clf.predict_proba(["정말 재밌었다", "12345", "시간 아깝다"])
    assert [s["positive"] for s in scored[:3]] == pytest.approx(expected[:, 1].tolist(), abs=1e-5)


def test_huge_review_is_cut_and_says_so(client, clf):
    text = "정말 " * 50_000
    r = client.post("/api/predict", json={"text": text})
    assert r.status_code == 200
    [p] = r.json()["predictions"]
    assert p["truncated"] is True
    expected = clf.predict_proba([text[:MAX_CHARS]])[0]  # scored on its first MAX_CHARS characters
    assert [p["scores"]["negative"], p["scores"]["positive"]] == pytest.approx(expected.tolist(), abs=1e-5)


@pytest.mark.parametrize("body, status, words", [
    (b"not json", 400, "not JSON"),
    (b"\xff\xfe", 400, "not JSON"),
    (b"[1, 2]", 422, '"texts"'),
    (b'{"review": "x"}', 422, '"text"'),
    (b'{"texts": "one string"}', 422, '"texts"'),
    (b"[" * 100_000, 400, "not JSON"),  # nested past Python's recursion limit
])
def test_bad_bodies_get_a_clear_message(client, body, status, words):
    r = client.post("/api/predict", content=body)
    assert r.status_code == status
    assert words in r.json()["error"]


def test_limits_on_rows_and_bytes(clf):
    small = client_for(clf, max_rows=3, max_bytes=200)
    r = small.post("/api/predict", json={"texts": ["a", "b", "c", "d"]})
    assert r.status_code == 413 and "limit is 3" in r.json()["error"]
    r = small.post("/api/predict", json={"text": "가" * 500})
    assert r.status_code == 413 and "200" in r.json()["error"]
    # No Content-Length to trust (a chunked body): the limit holds while reading.
    r = small.post("/api/predict", content=iter([b'{"text": "', b"x" * 300, b'"}']))
    assert r.status_code == 413
    assert small.post("/api/predict", json={"texts": ["a", "b", "c"]}).status_code == 200


def test_busy_server_says_retry_later(clf):
    full = Failing(clf, lambda texts: Busy("The server is busy (256 requests waiting): try again."))
    r = client_for(full).post("/api/predict", json={"text": "x"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1" and "busy" in r.json()["error"]


def test_a_model_failure_is_a_500_with_a_message_and_the_api_goes_on(clf):
    broken = RuntimeError("the runtime broke")
    client = client_for(Failing(clf, lambda texts: broken if "boom" in texts else None))
    r = client.post("/api/predict", json={"text": "boom"})
    assert r.status_code == 500 and "could not score" in r.json()["error"]
    assert client.post("/api/predict", json={"text": "괜찮다"}).status_code == 200


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_login_is_required_when_the_app_has_one(clf):
    client = client_for(clf, auth=("me", "s3cret"))
    for headers in ({}, basic("me", "wrong"), basic("you", "s3cret"), {"Authorization": "Basic !!!"},
                    {"Authorization": "Bearer s3cret"}):
        r = client.post("/api/predict", json={"text": "x"}, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Basic")
        assert client.get("/api/health", headers=headers).status_code == 401
    assert client.post("/api/predict", json={"text": "x"}, headers=basic("me", "s3cret")).status_code == 200
    assert client.get("/api/health", headers=basic("me", "s3cret")).json()["status"] == "ok"


def test_health_names_the_model(client, clf):
    body = client.get("/api/health").json()
    assert body == {"status": "ok", "model": clf.name, "runtime": clf.runtime.name,
                    "labels": ["negative", "positive"]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(
    json_values,
    st.fixed_dictionaries({"text": json_values}),
    st.fixed_dictionaries({"texts": st.lists(json_values, max_size=6)}),
))
def test_any_json_gets_an_answer_never_a_crash(client, payload):
    r = client.post("/api/predict", content=json.dumps(payload))
    assert r.status_code in (200, 422), r.text
    body = r.json()
    if r.status_code == 422:
        assert "texts" in body["error"]
        return
    for p in body["predictions"]:
        assert p["scores"] is None or sum(p["scores"].values()) == pytest.approx(1.0, abs=1e-5)
