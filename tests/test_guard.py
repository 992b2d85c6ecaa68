"""nsmc/guard.py against a small Starlette app on a real uvicorn server (127.0.0.1): body limits, login
before body, the login page's API listing, connection limits and timeouts, quiet repeats, folders."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from nsmc import guard

ROOT = Path(__file__).resolve().parents[1]

MAX_BODY, MAX_UPLOAD, MAX_CONNECTIONS, HEADER_TIMEOUT = 1_000, 5_000, 6, 0.5
LOGIN = "Basic " + base64.b64encode(b"me:s3cret").decode()
PAGE = '<html><script>window.gradio_api_info = {"named_endpoints": {"/predict": {}}};</script>page</html>'


class Server:
    """One uvicorn server in a thread; `seen` counts the body bytes the app read."""

    def __init__(self, auth=None, header_timeout=HEADER_TIMEOUT):
        self.seen = 0

        async def echo(request):
            async for chunk in request.stream():
                self.seen += len(chunk)
            return JSONResponse({"read": self.seen})

        async def slow(request):
            await asyncio.sleep(3 * HEADER_TIMEOUT)  # a request in flight longer than the header timeout
            return JSONResponse({})

        routes = [Route("/echo", echo, methods=["POST"]), Route(guard.UPLOAD_PATH, echo, methods=["POST"]),
                  Route("/", lambda r: HTMLResponse(PAGE)), Route("/slow", slow)]
        app = Starlette(routes=routes, middleware=[
            Middleware(guard.Guard, auth=auth, max_body=MAX_BODY, max_upload=MAX_UPLOAD)])
        app.cookie_id, app.tokens = "id", {"good-token": "me"}  # what Gradio's App keeps for its login
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        guard.watch_connections(self.server, MAX_CONNECTIONS, header_timeout)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def ask(self, head: str, body: bytes = b"") -> tuple[int, bytes]:
        with self.connect() as s:
            s.sendall(head.encode() + b"\r\n" + body)
            return answer(s)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(5)


def answer(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def request(method: str, path: str, *headers: str) -> str:
    start = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    return start + "".join(f"{h}\r\n" for h in headers)


@pytest.fixture(autouse=True)
def quick_drain(monkeypatch):
    monkeypatch.setattr(guard, "DRAIN_IDLE", 0.1)  # these clients send nothing after a refusal


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def auth_server():
    s = Server(auth=("me", "s3cret"))
    yield s
    s.stop()


def test_a_body_over_its_limit_is_refused_before_it_is_read(server):
    server.seen = 0
    status, body = server.ask(request("POST", "/echo", "Content-Length: 50000000"))  # and no body at all
    assert status == 413 and b"limit is 1,000" in body and server.seen == 0
    assert server.ask(request("POST", "/echo", "Content-Length: 900"), b"a" * 900)[0] == 200
    # Uploads have their own, larger limit, for the whole request (all its files together).
    assert server.ask(request("POST", guard.UPLOAD_PATH, "Content-Length: 4000"), b"a" * 4000)[0] == 200
    assert server.ask(request("POST", guard.UPLOAD_PATH, "Content-Length: 6000"))[0] == 413


def test_a_client_that_sends_the_whole_body_first_still_reads_the_refusal(server):
    """Like http.client and requests: send everything, then read. The refused body is read and dropped
    (never kept) so the client sees 413 rather than a reset connection."""
    server.seen = 0
    status, body = server.ask(request("POST", "/echo", "Content-Length: 3000000"), b"a" * 3_000_000)
    assert status == 413 and server.seen == 0


def test_a_chunked_body_is_cut_at_the_limit(server, caplog):
    server.seen = 0
    with server.connect() as s:
        s.sendall(request("POST", "/echo", "Transfer-Encoding: chunked").encode() + b"\r\n")
        s.sendall((b"100\r\n" + b"a" * 256 + b"\r\n") * 5)  # 1,280 bytes and counting: no end chunk
        status, body = answer(s)
    assert status == 413 and b"over 1,000 bytes" in body
    assert server.seen <= MAX_BODY + 256  # the app stopped reading at the chunk that passed the limit
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_login_comes_before_the_body(auth_server):
    auth_server.seen = 0
    status, body = auth_server.ask(request("POST", "/echo", "Content-Length: 50000000"))
    assert status == 401 and auth_server.seen == 0
    for login in (f"Authorization: {LOGIN}", "Cookie: access-token-id=good-token"):
        assert auth_server.ask(request("POST", "/echo", login, "Content-Length: 3"), b"abc")[0] == 200
    wrong_password = "Authorization: Basic " + base64.b64encode(b"me:nope").decode()
    for wrong in (wrong_password, "Cookie: access-token-id=bad", "Authorization: Basic !!!"):
        assert auth_server.ask(request("POST", "/echo", wrong, "Content-Length: 3"), b"abc")[0] == 401


def test_the_login_page_does_not_list_the_api(auth_server, server):
    status, page = auth_server.ask(request("GET", "/"))
    assert status == 200 and b"page" in page and b"/predict" not in page
    assert b'"named_endpoints": {}' in page  # the frontend still finds the object it expects
    assert b"/predict" in auth_server.ask(request("GET", "/", f"Authorization: {LOGIN}"))[1]
    assert b"/predict" in server.ask(request("GET", "/"))[1]  # no login set: nothing to hide


def closed(s: socket.socket, within: float) -> bool:
    """Whether the server closes s within `within` seconds (EOF or reset), without sending anything."""
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_connections_over_the_limit_close_the_oldest_idle_ones():
    server = Server(header_timeout=60)  # so that only the limit closes connections here
    socks = [server.connect() for _ in range(MAX_CONNECTIONS + 3)]
    try:
        assert all(closed(s, 2) for s in socks[:3])
        assert not any(closed(s, 0.05) for s in socks[3:])
        # A newcomer still gets in (and its arrival pushes out the next oldest idle connection).
        assert server.ask(request("POST", "/echo", "Content-Length: 2"), b"ok")[0] == 200
    finally:
        for s in socks:
            s.close()
        server.stop()


def test_idle_and_slow_connections_are_closed(server):
    idle, slow = server.connect(), server.connect()
    slow.sendall(b"GET /slow HTTP/1.1\r\nHo")  # headers that never finish
    t0 = time.monotonic()
    assert closed(idle, 5) and closed(slow, 5)
    assert time.monotonic() - t0 < 4 * HEADER_TIMEOUT
    idle.close(), slow.close()
    # A request in flight for longer than the timeout is not cut off.
    assert server.ask(request("GET", "/slow"))[0] == 200


def test_repeated_errors_are_logged_once_per_interval(monkeypatch):
    log = logging.getLogger("test_guard.repeats")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    log.addFilter(guard.RepeatFilter(interval=60))
    now = [1000.0]
    monkeypatch.setattr(guard.time, "monotonic", lambda: now[0])
    try:
        for _ in range(500):
            try:
                raise OSError(24, "Too many open files")
            except OSError:
                log.exception("socket.accept() out of system resource")
        log.error("something else")
        now[0] += 61
        log.exception("socket.accept() out of system resource", exc_info=OSError(24, "Too many open files"))
    finally:
        log.removeHandler(handler)
    assert [r.getMessage() for r in records] == [
        "socket.accept() out of system resource", "something else",
        "socket.accept() out of system resource (499 more like this in the last 60 s)"]


def test_temp_folders_are_removed_at_exit(tmp_path):
    code = ("from nsmc import guard; import os; guard.private_gradio_cache(); "
            "p = guard.temp_folder('nsmc-app-'); (p / 'x.csv').write_text('x'); "
            "print(p, os.environ['GRADIO_TEMP_DIR'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TMPDIR": str(tmp_path)}, cwd=ROOT)
    folders = out.stdout.split()
    assert len(folders) == 2 and all(f.startswith(str(tmp_path)) for f in folders)
    assert not any(tmp_path.iterdir())
