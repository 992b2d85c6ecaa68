"""SECURITY.md's claims about the served app, checked against the real app.py on 127.0.0.1."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from importlib.metadata import version

import pytest

from app_server import ROOT, running_app

FLOOR = (6, 20)  # every advisory listed in SECURITY.md is fixed by gradio 6.20


def as_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v)[:3])


def test_gradio_is_past_the_known_advisories():
    assert as_tuple(version("gradio")) >= FLOOR
    pin = re.search(r"^gradio\s*(==|>=)\s*([\d.]+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pin and as_tuple(pin.group(2)) >= FLOOR


@pytest.fixture(scope="module")
def server(app_server):
    return app_server[0]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def call(url: str, api: str, *data) -> tuple[str, str]:
    """Gradio's plain HTTP API: POST the inputs, then read the event stream: ('complete'|'error', data)."""
    status, body = post(f"{url}gradio_api/call/{api}", json.dumps({"data": list(data)}).encode())
    assert status == 200, body
    _, stream = get(f"{url}gradio_api/call/{api}/{json.loads(body)['event_id']}")
    events = re.findall(r"event: (\w+)\ndata: (.*)", stream.decode())
    return [(e, d) for e, d in events if e in ("complete", "error")][-1]


def test_served_components(server):
    """No flagging, nothing that renders HTML or browses server folders; the table shows plain text."""
    config = json.loads(get(server + "config")[1])
    types = {c["type"] for c in config["components"]}
    assert not types & {"html", "fileexplorer", "image", "audio", "video", "model3d", "uploadbutton"}
    assert "flag" not in json.dumps(config).lower()
    assert all(c["props"].get("datatype") in ("str", ["str"], None) for c in config["components"] if c["type"] == "dataframe")
    for c in config["components"]:  # Markdown shows only our own text, never the user's, and sanitizes HTML
        if c["type"] == "markdown":
            assert c["props"].get("sanitize_html", True) is not False


def test_server_paths_cannot_be_read(server):
    assert get(server + "gradio_api/file=/etc/passwd")[0] in (403, 404)
    assert get(server + "file=/etc/passwd")[0] in (403, 404)
    # An API call naming a server file instead of uploading one.
    event, data = call(server, "predict_file", {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}})
    assert event == "error" and "root:" not in data
    event, data = call(server, "predict_file", {"path": str(ROOT / "app.py"), "meta": {"_type": "gradio.FileData"}})
    assert event == "error" and "gradio" not in data


def upload(server: str, name: str, content: bytes) -> tuple[int, bytes]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return post(server + "gradio_api/upload", body, f"multipart/form-data; boundary={boundary}")


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def test_upload_limits(server):
    status, body = upload(server, "big.txt", b"a" * (11 * 2**20))  # over Gradio's hard limit (10 MB)
    assert status == 413
    for name, content, message in [
        ("reviews.exe", b"MZ\x90\x00", "Invalid file type"),  # Gradio's file_types check, before our own
        ("binary.txt", b"\x00\x01\x02" * 100, "binary"),
        ("many.txt", "좋다\n".encode() * 5_001, "more than 5,000"),
        ("large.csv", b"document\n" + b"x" * (3 * 2**20), "limit is 2 MB"),
    ]:
        status, body = upload(server, name, content)
        assert status == 200, body
        event, data = call(server, "predict_file", file_data(json.loads(body)[0]))
        assert event == "error" and message in data, (name, data)


def test_markup_comes_back_as_text(server):
    review = '<script>alert(1)</script><img src=x onerror=alert(2)> "재밌다"'
    event, data = call(server, "predict_batch", [review, "=HYPERLINK(\"http://x\")"])
    assert event == "complete"
    rows = json.loads(data)[0]
    assert rows[0]["document"] == review  # unchanged: escaping is the renderer's job, and it renders text
    assert rows[1]["document"] == '=HYPERLINK("http://x")'  # JSON is data; only the CSV download defuses formulas


def test_no_route_skips_the_queue(server):
    """Gradio also serves each endpoint at /gradio_api/run/<name> unless api_open=False; that route
    skips the queue, its size cap and its batching."""
    for api in ("predict", "predict_batch", "explain"):
        status, body = post(f"{server}gradio_api/run/{api}", json.dumps({"data": ["재밌다"]}).encode())
        assert status == 404, (api, status, body[:200])
    assert call(server, "predict", "재밌다")[0] == "complete"  # the queued route still answers


def test_a_login_guards_the_page_and_both_apis(tiny_model_dir, tmp_path):
    """With --auth (here GRADIO_AUTH), nothing answers a stranger: Gradio's API wants its login and
    the JSON API the same USER:PASSWORD as HTTP Basic."""
    import base64

    with running_app(tiny_model_dir, tmp_path / "app.log", GRADIO_AUTH="me:s3cret") as (url, _):
        assert post(f"{url}gradio_api/call/predict", json.dumps({"data": ["재밌다"]}).encode())[0] == 401
        assert post(f"{url}api/predict", json.dumps({"text": "재밌다"}).encode())[0] == 401
        assert get(f"{url}api/health")[0] == 401
        login = {"Authorization": "Basic " + base64.b64encode(b"me:s3cret").decode(), "Content-Type": "application/json"}
        req = urllib.request.Request(f"{url}api/predict", data=json.dumps({"text": "재밌다"}).encode(), headers=login, method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200 and len(json.loads(r.read())["predictions"]) == 1
