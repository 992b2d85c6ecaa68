"""Time from `python app.py` to its first answer on /predict (what a Space or a user waits for).

Usage:
    python bench/startup.py --model models/nsmc-small            # median of 3 cold starts
    python bench/startup.py --model DIR --runs 5 --port 7870

Each run starts a fresh `python app.py --model DIR --port P` (offline, analytics off), calls
/predict with gradio_client every 0.1 s until one call answers, prints the seconds, and stops
the server. The client library is imported before the clock starts, so only the app is timed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]
from load import env, free_port  # noqa: E402  (the load test's offline environment and port picker)


def first_answer(model: str, port: int, timeout: float) -> float:
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: a chatty app can never block on it
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", model, "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=errors)
        try:
            while time.perf_counter() - start < timeout:
                if proc.poll() is not None:
                    errors.seek(0)
                    sys.exit(f"app.py exited with {proc.returncode}:\n{errors.read()[-4000:]}")
                try:
                    result = Client(url, verbose=False).predict("첫 번째 리뷰입니다", api_name="/predict")
                    if result.get("confidences"):
                        return time.perf_counter() - start
                except Exception:  # not up yet: connection refused, or the app is still starting
                    pass
                time.sleep(0.1)
            sys.exit(f"no answer within {timeout:.0f} s")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "nsmc-small"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, help="default: a free port per run")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    times = []
    for i in range(args.runs):
        seconds = first_answer(args.model, args.port or free_port(), args.timeout)
        times.append(seconds)
        print(f"run {i + 1}: {seconds:.2f} s", flush=True)
    print(f"start-up to first answer: median {statistics.median(times):.2f} s over {len(times)} runs "
          f"(min {min(times):.2f}, max {max(times):.2f}); model {args.model}")


if __name__ == "__main__":
    main()
