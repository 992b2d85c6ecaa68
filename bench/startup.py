"""Time from `python app.py` to its first answer on /predict (what a Space or a user waits for).

Usage:
    python bench/startup.py --model models/nsmc-small            # median of 3 cold starts
    python bench/startup.py --model DIR --runs 5 --port 7870

Each run starts a fresh `python app.py --model DIR` through bench/app_server.py (offline, analytics
off), which asks it for /gradio_api/info every 0.1 s; then one /predict call with gradio_client. The
seconds to that answer are printed. The client library is imported before the clock starts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gradio_client import Client

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]
from app_server import running_app  # noqa: E402  (the launcher the tests and the load test use)


def first_answer(model: str, port: int | None, timeout: float) -> float:
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:  # a file: a chatty app never blocks on it
        start = time.perf_counter()
        with running_app(model, Path(log.name), timeout=timeout, port=port, poll=0.1) as (url, _):
            result = Client(url, verbose=False).predict("첫 번째 리뷰입니다", api_name="/predict")
            seconds = time.perf_counter() - start
        if not result.get("confidences"):
            sys.exit(f"app.py answered without probabilities: {result}")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "nsmc-small"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, help="default: a free port per run")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    times = []
    for i in range(args.runs):
        seconds = first_answer(args.model, args.port, args.timeout)
        times.append(seconds)
        print(f"run {i + 1}: {seconds:.2f} s", flush=True)
    print(f"start-up to first answer: median {statistics.median(times):.2f} s over {len(times)} runs "
          f"(min {min(times):.2f}, max {max(times):.2f}); model {args.model}")


if __name__ == "__main__":
    main()
