"""Start the real `app.py` on 127.0.0.1 in a subprocess: the one launcher for the tests and bench/load.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The app with every forward pass answering a constant: what is left is the serving layer (and tokenizing).
NO_MODEL = """
import runpy, sys
import numpy as np
sys.path.insert(0, {root!r})
from nsmc.runtime import Runtime
Runtime.probs = lambda self, ids, mask, wide=False: np.full((len(ids), 2), 0.5, np.float32)
runpy.run_path({app!r}, run_name="__main__")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(**extra) -> dict:
    """This environment, offline, without a MODEL_DIR or GRADIO_AUTH of the person running it."""
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_DIR", "GRADIO_AUTH")}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            "TOKENIZERS_PARALLELISM": "false", **extra}


@contextmanager
def running_app(model: str | Path, log_path: Path, *args: str, timeout: float = 120.0,
                no_model: bool = False, port: int | None = None, poll: float = 0.25, **env: str):
    """Yield (url, process) once the server answers HTTP (asked every `poll` s); stop it afterwards, by
    its own pid. `args`: more app.py options ("--runtime", "torch"); `env`: more environment (GRADIO_AUTH)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/"
    app = [str(ROOT / "app.py")]
    if no_model:
        app = ["-c", NO_MODEL.format(root=str(ROOT), app=app[0])]
    with open(log_path, "w") as log:  # the child keeps its own copy of the file descriptor
        proc = subprocess.Popen([sys.executable, *app, "--model", str(model), "--host", "127.0.0.1",
                                 "--port", str(port), *args], cwd=ROOT, env=app_env(**env), stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log = Path(log_path).read_text()[-4000:]
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log}")
            try:
                with urllib.request.urlopen(url + "gradio_api/info", timeout=2):
                    break
            except urllib.error.HTTPError:  # an answer all the same (401 when the app wants a login)
                break
            except OSError:
                if time.monotonic() > deadline:
                    log = Path(log_path).read_text()[-4000:]
                    raise TimeoutError(f"app.py did not answer within {timeout:.0f} s:\n{log}")
                time.sleep(poll)  # polling a starting server, not waiting for threads to overlap
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
