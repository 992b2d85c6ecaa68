"""Start the real `app.py` on 127.0.0.1 in a subprocess, for the app and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(**extra) -> dict:
    """The test's environment, offline, without a MODEL_DIR or GRADIO_AUTH of the person running it."""
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_DIR", "GRADIO_AUTH")}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            "TOKENIZERS_PARALLELISM": "false", **extra}


@contextmanager
def running_app(model_dir: Path, log_path: Path, timeout: float = 90.0, **env):
    """Yield the URL once the server answers HTTP; stop it afterwards (by its own pid). `env`: extra
    environment for the app, e.g. GRADIO_AUTH."""
    import urllib.error
    import urllib.request

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--model", str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=app_env(**env), stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(url + "gradio_api/info", timeout=2):
                    break
            except urllib.error.HTTPError:  # an answer all the same (401 when the app wants a login)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"app.py did not answer within {timeout:.0f} s:\n{log_path.read_text()}")
                time.sleep(0.25)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
