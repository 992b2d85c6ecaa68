"""A bounded load test of app.py: concurrent clients, a mix of good and bad requests, server memory.

Usage:
    python bench/load.py --model models/nsmc-small                 # 16 clients, 60 s, then on to 10,000 requests
    python bench/load.py --model DIR --clients 16 --seconds 60 --requests 10000 --no-write

Starts `python app.py --model DIR` on 127.0.0.1 (offline), warms it up, then runs N client threads
over Gradio's plain HTTP API (POST /gradio_api/call/<api>, then read the event stream). The mix:
70% /predict with one NSMC test review, 15% /predict_batch with 8-32 reviews, 15% bad inputs that
must still be answered (empty, blank, 100,000 characters, lone surrogates, markup, a number, null).
It runs for --seconds, then keeps going until --requests requests have been answered, and reports:
requests/s and reviews/s, p50/p99 latency, errors (HTTP failures, error events, malformed answers),
and the server's resident memory after warm-up and after the last request. It then measures the
model alone on the same cores (the same reviews through SentimentClassifier.predict_proba in batches
of 16, the most the app's queue merges) with the server stopped, and writes the `## Load` section of
bench/RESULTS.md (other sections are left alone).

Targets (from the reliability issue): zero errors, memory growth under 10%, and served reviews/s
within 20% of the model alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from speed import RESULTS, write_section  # noqa: E402  (one way to rewrite a section of RESULTS.md)
QUEUE_BATCH = 16  # app.py's MAX_BATCH: single reviews arriving together share one forward pass
BAD_INPUTS = ["", "   \n\t", "정말 " * 50_000, "\udc00 깨진 \ud800", "<script>alert(1)</script> 최고", 12345, None]


def reviews(limit: int = 5000) -> list[str]:
    from nsmc.corpus import read_ratings

    for path in (ROOT.parent / "shared/data/nsmc/ratings_test.txt.gz", ROOT / "tests/fixtures/ratings_test.txt"):
        if path.exists():
            return read_ratings(path).documents[:limit]
    raise SystemExit("no NSMC test file found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """One keep-alive connection per client thread; a call is a POST and a read of its event stream."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
        for attempt in (0, 1):  # a keep-alive connection the server closed: reconnect once
            try:
                self.conn.request(method, path, body, {"Content-Type": "application/json"} if body else {})
                r = self.conn.getresponse()
                return r.status, r.read().decode("utf-8", "replace")
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt:
                    raise

    def call(self, api: str, *data) -> tuple[str, object]:
        status, body = self._request("POST", f"/gradio_api/call/{api}", json.dumps({"data": list(data)}).encode())
        if status != 200:
            return "http", f"{status} {body[:200]}"
        status, stream = self._request("GET", f"/gradio_api/call/{api}/{json.loads(body)['event_id']}")
        events = re.findall(r"event: (\w+)\ndata: (.*)", stream)
        final = [(e, d) for e, d in events if e in ("complete", "error")]
        if status != 200 or not final:
            return "http", f"{status} {stream[:200]}"
        event, data = final[-1]
        return event, json.loads(data) if event == "complete" else data


def valid_label(value) -> bool:
    """A gr.Label answer: probabilities summing to 1, or (blank input) a message and no confidences."""
    if not isinstance(value, dict):
        return False
    if value.get("confidences") is None:
        return isinstance(value.get("label"), str)
    return abs(sum(c["confidence"] for c in value["confidences"]) - 1) < 1e-3


def one_request(api: Api, rng: random.Random, texts: list[str]) -> tuple[str, bool, int, str]:
    """(kind, ok, reviews scored, detail)."""
    r = rng.random()
    if r < 0.70:
        kind, event, out = "single", *api.call("predict", rng.choice(texts))
        ok = event == "complete" and valid_label(out[0])
        n = 1
    elif r < 0.85:
        batch = rng.sample(texts, rng.randint(8, 32))
        kind, event, out = "batch", *api.call("predict_batch", batch)
        ok = (event == "complete" and len(out[0]) == len(batch)
              and all(abs(row["negative"] + row["positive"] - 1) < 1e-3 for row in out[0]))
        n = len(batch)
    else:
        kind, event, out = "bad", *api.call("predict", rng.choice(BAD_INPUTS))
        ok = event == "complete" and valid_label(out[0])
        n = 1
    return kind, ok, n, "" if ok else f"{event}: {str(out)[:200]}"


def server_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))


def run_load(port: int, pid: int, texts: list[str], clients: int, seconds: float, total: int, seed: int) -> dict:
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {"single": [], "batch": [], "bad": []}
    errors: list[str] = []
    counts = {"requests": 0, "reviews": 0}
    window: dict = {}
    start = time.perf_counter()
    stop = threading.Event()

    def client(i: int) -> None:
        api, rng = Api(port), random.Random(seed + i)
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                kind, ok, n, detail = one_request(api, rng, texts)
            except Exception as e:  # a dropped connection or a timeout is an error too, not a crash of the bench
                kind, ok, n, detail = "error", False, 0, f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            with lock:
                latencies.setdefault(kind, []).append(dt)
                counts["requests"] += 1
                counts["reviews"] += n if ok else 0
                if not ok:
                    errors.append(f"{kind} {detail}")
                elapsed = time.perf_counter() - start
                if elapsed >= seconds and not window:
                    window.update(requests=counts["requests"], reviews=counts["reviews"], seconds=elapsed)
                if elapsed >= seconds and counts["requests"] >= total:
                    stop.set()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    every = [x for v in latencies.values() for x in v]
    return dict(
        requests=counts["requests"], reviews=counts["reviews"], seconds=elapsed, window=window, errors=errors,
        p50=float(np.percentile(every, 50)), p99=float(np.percentile(every, 99)),
        by_kind={k: (len(v), float(np.percentile(v, 50)), float(np.percentile(v, 99))) for k, v in latencies.items() if v},
        rss_after=server_rss(pid),
    )


def model_alone(model: str, texts: list[str], seconds: float = 20.0) -> float:
    """Reviews/s of SentimentClassifier alone, batches of 16, same thread setting as the app."""
    code = f"""
import json, sys, time
sys.path.insert(0, {str(ROOT)!r})
from nsmc.inference import SentimentClassifier, set_threads
set_threads()
clf = SentimentClassifier.load({model!r})
texts = json.load(sys.stdin)
clf.predict_proba(texts[:64], batch_size={QUEUE_BATCH})  # warm-up
n, start = 0, time.perf_counter()
while time.perf_counter() - start < {seconds}:
    for i in range(0, len(texts), {QUEUE_BATCH}):
        clf.predict_proba(texts[i:i + {QUEUE_BATCH}], batch_size={QUEUE_BATCH})
        n += len(texts[i:i + {QUEUE_BATCH}])
        if time.perf_counter() - start >= {seconds}:
            break
print(n / (time.perf_counter() - start))
"""
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts[:2000]), capture_output=True, text=True,
                         env=env(), check=True)
    return float(out.stdout.strip().splitlines()[-1])


def env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            "TOKENIZERS_PARALLELISM": "false"}


def start_server(model: str, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model", model, "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env(), stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited:\n{log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/gradio_api/info")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("app.py did not start within 120 s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "nsmc-small"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--requests", type=int, default=10_000, help="keep going after --seconds until this many")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)

    texts = reviews()
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-load-{port}.log"
    proc = start_server(args.model, port, log)
    try:
        api, rng = Api(port), random.Random(args.seed - 1)
        for _ in range(args.warmup):  # lazy initialisation is not growth
            one_request(api, rng, texts)
        rss_before = server_rss(proc.pid)
        load_before = os.getloadavg()[0]
        result = run_load(port, proc.pid, texts, args.clients, args.seconds, args.requests, args.seed)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    alone = model_alone(args.model, texts)

    w = result["window"]
    served = result["reviews"] / result["seconds"]
    growth = result["rss_after"] / rss_before - 1
    lines = [
        f"## Load",
        "",
        f"`python bench/load.py --model {args.model if not Path(args.model).is_absolute() else Path(args.model).name} "
        f"--clients {args.clients} --seconds {args.seconds:g} --requests {args.requests}` on {platform.node() and 'this machine'}: "
        f"{psutil.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), server and clients on the same cores, "
        f"load average {load_before:.1f} when it started. {time.strftime('%Y-%m-%d')}.",
        "",
        "Mix: 70% `/predict` (one NSMC test review), 15% `/predict_batch` (8-32 reviews), 15% bad inputs that must still be "
        "answered (empty, blank, 100,000 characters, lone surrogates, `<script>`, a number, null).",
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        f"| requests (first {w.get('seconds', 0):.0f} s / all) | {w.get('requests', 0):,} / {result['requests']:,} in {result['seconds']:.0f} s | |",
        f"| requests/s | {result['requests'] / result['seconds']:.1f} | |",
        f"| reviews/s served | {served:.1f} | within 20% of the model alone |",
        f"| reviews/s, model alone (batches of {QUEUE_BATCH}, same cores, server stopped) | {alone:.1f} | |",
        f"| served / model alone | {served / alone:.0%} | ≥ 80% |",
        f"| latency p50 / p99, all requests | {result['p50'] * 1000:.0f} ms / {result['p99'] * 1000:.0f} ms | |",
    ]
    for kind, (n, p50, p99) in sorted(result["by_kind"].items()):
        lines.append(f"| latency p50 / p99, {kind} ({n:,}) | {p50 * 1000:.0f} ms / {p99 * 1000:.0f} ms | |")
    lines += [
        f"| errors | {len(result['errors'])} | 0 |",
        f"| server memory (RSS) after warm-up → after {result['requests']:,} requests | "
        f"{rss_before / 2**20:.0f} MiB → {result['rss_after'] / 2**20:.0f} MiB ({growth:+.1%}) | < +10% |",
        "",
    ]
    if result["errors"]:
        lines += ["First errors:", "", *[f"- `{e}`" for e in result["errors"][:5]], ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(text, heading="## Load")
        print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
