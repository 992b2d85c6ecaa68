"""SECURITY.md's claims about the served app, checked against the real app.py on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import urllib.error
import urllib.request
import uuid
from importlib.metadata import version

import pytest

from app_server import ROOT, running_app

FLOOR = (6, 20)  # every advisory listed in SECURITY.md is fixed by gradio 6.20
MAX_CONNECTIONS = 8  # the guarded app's, lowered from its default so a test can pass it
BASIC = "Authorization: Basic " + base64.b64encode(b"me:s3cret").decode()


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
    assert all(c["props"].get("datatype") in ("str", ["str"], None)
               for c in config["components"] if c["type"] == "dataframe")
    for c in config["components"]:  # Markdown shows only our own text, never the user's, and sanitizes HTML
        if c["type"] == "markdown":
            assert c["props"].get("sanitize_html", True) is not False


def test_server_paths_cannot_be_read(server):
    assert get(server + "gradio_api/file=/etc/passwd")[0] in (403, 404)
    assert get(server + "file=/etc/passwd")[0] in (403, 404)
    # An API call naming a server file instead of uploading one.
    event, data = call(server, "predict_file", {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}})
    assert event == "error" and "root:" not in data
    event, data = call(server, "predict_file",
                       {"path": str(ROOT / "app.py"), "meta": {"_type": "gradio.FileData"}})
    assert event == "error" and "gradio" not in data


def upload(server: str, name: str, content: bytes) -> tuple[int, bytes]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content
    body += f"\r\n--{boundary}--\r\n".encode()
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
    # JSON is data; only the CSV download defuses formulas
    assert rows[1]["document"] == '=HYPERLINK("http://x")'


def test_no_route_skips_the_queue(server):
    """Gradio also serves each endpoint at /gradio_api/run/<name> unless api_open=False; that route
    skips the queue, its size cap and its batching."""
    for api in ("predict", "predict_batch", "explain"):
        status, body = post(f"{server}gradio_api/run/{api}", json.dumps({"data": ["재밌다"]}).encode())
        assert status == 404, (api, status, body[:200])
    assert call(server, "predict", "재밌다")[0] == "complete"  # the queued route still answers


@pytest.fixture(scope="module")
def guarded(tiny_model_dir, tmp_path_factory):
    """(url, process, log path) of the app with a login, few connections and a short header timeout."""
    log = tmp_path_factory.mktemp("guarded") / "app.log"
    with running_app(tiny_model_dir, log, GRADIO_AUTH="me:s3cret", NSMC_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
                     NSMC_HEADER_TIMEOUT="1") as (url, proc):
        yield url, proc, log


def test_a_login_guards_the_page_and_both_apis(guarded):
    """With --auth (here GRADIO_AUTH), nothing answers a stranger: Gradio's API wants its login and
    the JSON API the same USER:PASSWORD as HTTP Basic."""
    url = guarded[0]
    assert post(f"{url}gradio_api/call/predict", json.dumps({"data": ["재밌다"]}).encode())[0] == 401
    assert post(f"{url}api/predict", json.dumps({"text": "재밌다"}).encode())[0] == 401
    assert get(f"{url}api/health")[0] == 401
    login = {"Authorization": BASIC.partition(": ")[2], "Content-Type": "application/json"}
    body = json.dumps({"text": "재밌다"}).encode()
    req = urllib.request.Request(f"{url}api/predict", data=body, headers=login)
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200 and len(json.loads(r.read())["predictions"]) == 1


def raw(url: str, method: str, path: str, *headers: str, body: bytes = b"", half_close: bool = False):
    """One request on a plain socket: (status or None if the server only closed, answer body)."""
    host, port = url.split("//")[1].strip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"{method} /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n".encode()
                  + "".join(h + "\r\n" for h in headers).encode() + b"\r\n" + body)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return (int(data.split(b" ", 2)[1]) if data else None), data.partition(b"\r\n\r\n")[2]


def rss_mib(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def chunked(total: int, size: int = 2**16, start: bytes = b"") -> bytes:
    """A chunked body of about `total` bytes: `start`, then "a"s."""
    first = b"%x\r\n" % len(start) + start + b"\r\n" if start else b""
    return first + b"".join(b"%x\r\n" % size + b"a" * size + b"\r\n" for _ in range(total // size))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the server's memory from /proc")
def test_big_bodies_are_refused_unread_and_memory_comes_back(app_server):
    """Every route refuses a body over its limit from its Content-Length, before reading it, or as soon as
    a chunked one passes the limit; sessions keep no more inputs than the app needs, so memory comes back."""
    url, proc = app_server
    assert call(url, "predict", "a" * 1_900_000)[0] == "complete"  # warm up at the largest size allowed
    before = rss_mib(proc.pid)
    part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="r.txt"\r\n\r\n'
    multipart = ("multipart/form-data; boundary=b", part + b"a" * (6 * 2**20) + b"\r\n" + part)  # 6 MB, more
    for path in ("gradio_api/call/predict", "gradio_api/queue/join", "gradio_api/upload", "api/predict",
                 "login", "gradio_api/reset"):
        content_type, start = multipart if path == "gradio_api/upload" else ("application/json", b"")
        status, body = raw(url, "POST", path, f"Content-Type: {content_type}", "Content-Length: 50000000")
        assert status == 413 and b"limit is" in body, (path, status, body)
        if path in ("login", "gradio_api/reset"):  # these answer a JSON body without reading it
            continue
        # Chunked: refused as soon as it passes the limit (2 MB; uploads 11 MB), having sent just past it.
        limit = (11 if path == "gradio_api/upload" else 2) * 2**20
        status, body = raw(url, "POST", path, f"Content-Type: {content_type}", "Transfer-Encoding: chunked",
                           body=chunked(limit + 2**16 - len(start), start=start))
        assert status == 413, (path, status, body)
    # Each call/ is a new session, and Gradio keeps each session's last inputs: 60 sessions hold ~120 MB
    # if all are kept (the app keeps 16).
    for _ in range(60):
        assert call(url, "predict", "a" * 1_900_000)[0] == "complete"
    assert rss_mib(proc.pid) - before < 100


def test_one_upload_request_is_capped_as_a_whole(server):
    """Gradio's max_file_size (10 MB) is per file; the guard caps the request (10 MB + 1 MiB)."""
    boundary = uuid.uuid4().hex
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="r.txt"\r\n\r\n'.encode()
    body = (part + b"a" * (6 * 2**20) + b"\r\n") * 2 + f"--{boundary}--\r\n".encode()  # two 6 MB files
    # Nothing sent but the headers: they are enough to refuse.
    status, answer = raw(server, "POST", "gradio_api/upload", f"Content-Length: {len(body)}",
                         f"Content-Type: multipart/form-data; boundary={boundary}")
    assert status == 413, answer
    assert upload(server, "r.txt", b"a" * (6 * 2**20))[0] == 200  # one of them alone is fine


def test_markup_in_an_uploaded_file_is_not_rendered_in_the_error(server):
    header = ('<img src="http://127.0.0.1:9/x">,<a href="http://127.0.0.1:9/">link</a>,'
              '<form><input type=password></form>,<div style="position:fixed">x</div>')
    status, body = upload(server, "reviews.csv", (header + "\n1,2,3,4\n").encode())
    assert status == 200, body
    event, data = call(server, "predict_file", file_data(json.loads(body)[0]))
    assert event == "error" and "has no 'document' column" in data
    message = json.loads(data)["error"]
    assert "&lt;img" in message and not re.search(r"<(img|a|form|input|div)\b", message), message


def test_a_client_that_leaves_mid_body_is_not_an_error(guarded):
    url, _, log = guarded
    cookie = login_cookie(url)
    for path, login in (("api/predict", BASIC), ("gradio_api/queue/join", cookie)):
        status, _ = raw(url, "POST", path, login, "Content-Type: application/json", "Content-Length: 100",
                        body=b'{"text": "', half_close=True)
        assert status != 500
    assert raw(url, "GET", "api/health", BASIC)[0] == 200  # the server is fine (and the log written by now)
    text = log.read_text()
    assert "scoring failed" not in text and "Traceback" not in text and "ERROR" not in text, text[-3000:]


def login_cookie(url: str) -> str:
    req = urllib.request.Request(f"{url}login", data=b"username=me&password=s3cret", method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return "Cookie: " + "; ".join(c.split(";")[0] for c in r.headers.get_all("set-cookie"))


def test_a_stranger_sees_no_api(guarded):
    """With --auth, the login page carries no list of endpoints, and every API route wants the login."""
    url = guarded[0]
    status, page = raw(url, "GET", "")
    assert status == 200 and b"window.gradio_api_info" in page and b"predict_batch" not in page
    for method, path in (("GET", "openapi.json"), ("GET", "gradio_api/openapi.json"), ("GET", "config"),
                         ("GET", "gradio_api/info"), ("GET", "gradio_api/heartbeat/x"),
                         ("POST", "gradio_api/cancel"), ("POST", "gradio_api/reset")):
        assert raw(url, method, path, "Content-Length: 0")[0] in (401, 404), path
    cookie = login_cookie(url)
    assert b"predict_batch" in raw(url, "GET", "", cookie)[1]
    assert raw(url, "GET", "gradio_api/info", cookie)[0] == 200


def test_connections_are_bounded_and_idle_ones_closed(guarded):
    """Idle connections (two more than the app allows) neither lock others out nor stay open."""
    url, proc, _ = guarded
    host, port = url.split("//")[1].strip("/").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(MAX_CONNECTIONS + 2)]
    try:
        assert raw(url, "GET", "api/health", BASIC)[0] == 200
        assert all(s.recv(1) == b"" for s in idle)  # each closed: to make room, or after 1 s of nothing
        assert len(os.listdir(f"/proc/{proc.pid}/fd")) < 200
    finally:
        for s in idle:
            s.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_removes_the_apps_files(tiny_model_dir, tmp_path, sig):
    """Uploads and predictions live in temporary folders of the app's own, gone after SIGTERM or Ctrl-C."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with running_app(tiny_model_dir, tmp_path / "app.log", TMPDIR=str(tmp)) as (url, proc):
        status, body = upload(url, "reviews.txt", "재밌다\n지루하다\n".encode())
        assert status == 200 and call(url, "predict_file", file_data(json.loads(body)[0]))[0] == "complete"
        ours = sorted(p.name.split("-")[1] for p in tmp.glob("nsmc-*"))
        assert ours == ["app", "gradio"] and len([p for p in tmp.rglob("*") if p.is_file()]) >= 2
        proc.send_signal(sig)
        assert proc.wait(timeout=30) is not None
    assert not list(tmp.glob("nsmc-*")) and not (tmp / "gradio").exists()


def test_formula_like_cells_are_defused_in_the_csv(tmp_path):
    """Spreadsheets run a cell as a formula from = + - @ (| for DDE), also after spaces, and some read the
    full-width forms as ASCII; each gets a leading apostrophe. Other text is left alone."""
    import csv

    from nsmc.uploads import write_csv

    cells = ["=1+1", "|calc", " =1+1", "\u3000=1+1", "＝1+1", "＠SUM(A1)", "\t=1", "재밌다", "1 = 1"]
    path = write_csv([{"document": c} for c in cells], tmp_path / "p.csv")
    with open(path, encoding="utf-8-sig", newline="") as f:
        written = [row["document"] for row in csv.DictReader(f)]
    assert written == ["'" + c for c in cells[:7]] + cells[7:]
