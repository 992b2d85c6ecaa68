"""A bounded load test of app.py: concurrent clients, a mix of good and bad requests, server memory.

Usage:
    python bench/load.py --model models/nsmc-small                 # 16 clients, 60 s, then on to 10,000 requests
    python bench/load.py --model DIR --clients 16 --seconds 60 --requests 10000 --no-write
    python bench/load.py --model .cache/bench/kcbert-base-random --requests 0 --warmup 100
        # the kcbert-base architecture with random weights (bench/speed.py builds it): the same compute
        # per review as kcbert-base, so it shows the serving layer's share with a model that size

Starts `python app.py --model DIR` on 127.0.0.1 (offline) and warms it up with --warmup requests
from all clients at once. Then N client threads, each one keep-alive connection and one Gradio
session, call Gradio's plain HTTP API (POST /gradio_api/call/<api>, then read the event stream).
The mix: 70% /predict with one NSMC test review, 15% /predict_batch with 8-32 reviews, 15% bad
inputs that must still be answered (empty, blank, 100,000 characters, lone surrogates, markup, a
number, null). It runs for --seconds, then keeps going until --requests requests have been
answered, and reports requests/s and reviews/s, p50/p99 latency, errors (HTTP failures, error
events, malformed answers), and the server's resident memory at start, after warm-up, every 5 s,
and after the last request. With the server stopped it then measures the model alone on the same
cores: the same request mix one request at a time, and batches of 16 (see model_alone). It writes
the `## Load` section of bench/RESULTS.md (other sections are left alone).

Targets (from the reliability issue): zero errors, memory growth under 10%, and served reviews/s
within 20% of the model alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from speed import DATA, RESULTS, machine, write_section  # noqa: E402  (one way to rewrite a section of RESULTS.md)
QUEUE_BATCH = 16  # app.py's MAX_BATCH: single reviews arriving together share one forward pass
BAD_INPUTS = ["", "   \n\t", "정말 " * 50_000, "\udc00 깨진 \ud800", "<script>alert(1)</script> 최고", 12345, None]


def reviews(limit: int = 5000) -> list[str]:
    from nsmc.corpus import read_ratings

    for path in (DATA / "ratings_test.txt.gz", ROOT / "tests/fixtures/ratings_test.txt"):
        if path.exists():
            return read_ratings(path).documents[:limit]
    raise SystemExit("no NSMC test file found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """One client: a keep-alive connection and one Gradio session, as `gradio_client.Client` keeps
    (a browser tab is one session too); a call is a POST and a read of its event stream."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.session = uuid.uuid4().hex

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
        status, body = self._request("POST", f"/gradio_api/call/{api}", json.dumps({"data": list(data), "session_hash": self.session}).encode())
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


def draw(rng: random.Random, texts: list[str]) -> tuple[str, str, object]:
    """One request of the mix: (kind, endpoint, input)."""
    r = rng.random()
    if r < 0.70:
        return "single", "predict", rng.choice(texts)
    if r < 0.85:
        return "batch", "predict_batch", rng.sample(texts, rng.randint(8, 32))
    return "bad", "predict", rng.choice(BAD_INPUTS)


def one_request(api: Api, rng: random.Random, texts: list[str]) -> tuple[str, bool, int, str]:
    """(kind, ok, reviews scored, detail)."""
    kind, endpoint, value = draw(rng, texts)
    event, out = api.call(endpoint, value)
    if kind == "batch":
        ok = (event == "complete" and len(out[0]) == len(value)
              and all(abs(row["negative"] + row["positive"] - 1) < 1e-3 for row in out[0]))
    else:
        ok = event == "complete" and valid_label(out[0])
    n = len(value) if kind == "batch" else 1
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

    trace: list[tuple[int, int]] = []

    def watch() -> None:  # the server's memory every 5 s, against requests answered so far
        while not stop.wait(5.0):
            trace.append((counts["requests"], server_rss(pid)))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    every = [x for v in latencies.values() for x in v]
    return dict(
        requests=counts["requests"], reviews=counts["reviews"], seconds=elapsed, window=window, errors=errors,
        p50=float(np.percentile(every, 50)), p99=float(np.percentile(every, 99)),
        by_kind={k: (len(v), float(np.percentile(v, 50)), float(np.percentile(v, 99))) for k, v in latencies.items() if v},
        rss_after=server_rss(pid), rss_trace=trace[:: max(1, len(trace) // 12)],
    )


def model_alone(model: str, seconds: float, seed: int) -> dict:
    """The model with no server, in a fresh process on the same cores (the server stopped), kept as
    busy as the cores allow: as many caller threads as the runtime runs forward passes at once
    (one per core for ONNX). Two workloads, in alternating rounds:
    `same`: the load's own request mix, drawn by the same generator, each caller sending one request
    after another through the calls the app's handlers make (the serving layer's cost is the gap);
    `batch16`: test reviews in batches of 16, the most the app's queue merges (the model's capacity).
    Each figure is the median over rounds, in reviews/s."""
    code = f"""
import json, sys
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "bench")!r}]
from load import alone
print(json.dumps(alone({model!r}, {seconds!r}, {seed!r})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def alone(model: str, seconds: float, seed: int, rounds: int = 4) -> dict:
    from nsmc.inference import SentimentClassifier, as_text, set_threads

    set_threads()
    clf = SentimentClassifier.load(model, log=lambda *a: None)
    texts = reviews()
    sixteens = [texts[i : i + QUEUE_BATCH] for i in range(0, len(texts), QUEUE_BATCH)]

    def same(rng: random.Random) -> int:  # what app.predict / app.score do with the request, minus the server
        kind, _, value = draw(rng, texts)
        if kind == "batch":
            return len(clf.predict_proba([as_text(t) for t in value]))
        return len(clf.predict([as_text(value)]))

    def batch16(rng: random.Random) -> int:
        return len(clf.predict_proba(rng.choice(sixteens), batch_size=QUEUE_BATCH))

    def rate(step, callers: int) -> float:
        counts, end = [0] * callers, time.perf_counter() + seconds / rounds / 2

        def caller(k: int) -> None:
            rng = random.Random(seed + k)
            while time.perf_counter() < end:
                counts[k] += step(rng)

        start = time.perf_counter()
        threads = [threading.Thread(target=caller, args=(k,)) for k in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / (time.perf_counter() - start)

    callers = clf.runtime.streams
    rate(same, callers), rate(batch16, callers)  # warm-up
    runs = {"same": [], "batch16": []}
    for _ in range(rounds):
        runs["same"].append(rate(same, callers))
        runs["batch16"].append(rate(batch16, callers))
    return {k: float(np.median(v)) for k, v in runs.items()} | {"runs": runs, "callers": callers}


def env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            "TOKENIZERS_PARALLELISM": "false"}


NO_MODEL = """
import runpy, sys
import numpy as np
sys.path.insert(0, {root!r})
from nsmc.inference import SentimentClassifier
# Forward passes replaced by a constant answer: what is left is the serving layer (and tokenizing).
SentimentClassifier.probs_of_ids = lambda self, ids, batch_size=0: np.full((len(ids), 2), 0.5, np.float32)
runpy.run_path({app!r}, run_name="__main__")
"""


def start_server(model: str, port: int, no_model: bool = False) -> subprocess.Popen:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-load-{port}.log"
    app = ["-c", NO_MODEL.format(root=str(ROOT), app=str(ROOT / "app.py"))] if no_model else [str(ROOT / "app.py")]
    proc = subprocess.Popen([sys.executable, *app, "--model", model, "--host", "127.0.0.1", "--port", str(port)],
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


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def serving_alone(model: str, texts: list[str], clients: int, seconds: float, seed: int) -> dict:
    """The same clients and mix against app.py with the model's forward passes replaced by a
    constant: the requests/s the serving layer itself allows on these cores, whatever the model."""
    port = free_port()
    proc = start_server(model, port, no_model=True)
    try:
        run_load(port, proc.pid, texts, clients, 0, 200, seed - 2000)  # warm-up
        return run_load(port, proc.pid, texts, clients, seconds, 0, seed)
    finally:
        stop_server(proc)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "nsmc-small"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--requests", type=int, default=10_000, help="keep going after --seconds until this many")
    parser.add_argument("--warmup", type=int, default=1000, help="requests before memory is first measured")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)

    texts = reviews()
    port = free_port()
    proc = start_server(args.model, port)
    try:
        rss_started = server_rss(proc.pid)
        # Warm-up at full concurrency: the worker threads, their allocator arenas and the session
        # store fill up once; growth after that is what a long-running server would show.
        run_load(port, proc.pid, texts, args.clients, 0, args.warmup, args.seed - 1000)
        rss_before = server_rss(proc.pid)
        load_before = os.getloadavg()[0]
        result = run_load(port, proc.pid, texts, args.clients, args.seconds, args.requests, args.seed)
    finally:
        stop_server(proc)
    alone = model_alone(args.model, seconds=40, seed=args.seed)
    ceiling = serving_alone(args.model, texts, args.clients, 20, args.seed)
    ceiling_rps = ceiling["requests"] / ceiling["seconds"]

    cpu = machine()
    w = result["window"]
    served = result["reviews"] / result["seconds"]
    growth = result["rss_after"] / rss_before - 1
    model = os.path.relpath(args.model, ROOT) if Path(args.model).is_absolute() else args.model
    trace = ", ".join(f"{n:,}: {rss / 2**20:.0f}" for n, rss in result["rss_trace"])
    lines = [
        f"## Load: {Path(args.model).name}",
        "",
        f"`python bench/load.py --model {model} --clients {args.clients} --seconds {args.seconds:g} "
        f"--requests {args.requests} --warmup {args.warmup}` on this machine: {cpu['cores']} usable CPU cores "
        f"({cpu['cpu']}), server and clients on the same cores, 1-minute load average {load_before:.1f} after the "
        f"warm-up (mostly the warm-up's own). {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Mix: 70% `/predict` (one NSMC test review), 15% `/predict_batch` (8-32 reviews), 15% bad inputs that must still be "
        "answered (empty, blank, 100,000 characters, lone surrogates, `<script>`, a number, null). Each client is one "
        "keep-alive connection and one Gradio session, as a `gradio_client.Client` is, calling the plain HTTP API "
        "(`POST /gradio_api/call/<name>`, then its event stream).",
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        f"| requests (first {w.get('seconds', 0):.0f} s / all) | {w.get('requests', 0):,} / {result['requests']:,} in {result['seconds']:.0f} s | |",
        f"| requests/s | {result['requests'] / result['seconds']:.1f} | |",
        f"| reviews/s served | {served:.1f} | |",
        f"| reviews/s, model alone, the same request mix (no server) | {alone['same']:.1f} | |",
        f"| **served / model alone on the same requests** | **{served / alone['same']:.0%}** | ≥ 80% |",
        f"| reviews/s, model alone, batches of {QUEUE_BATCH} test reviews (its capacity) | {alone['batch16']:.1f} | |",
        f"| served / model capacity | {served / alone['batch16']:.0%} | |",
        f"| requests/s with no model (forward passes replaced by a constant): the serving layer's ceiling here | "
        f"{ceiling_rps:.1f} | |",
        f"| latency p50 / p99, all requests | {result['p50'] * 1000:.0f} ms / {result['p99'] * 1000:.0f} ms | |",
    ]
    for kind, (n, p50, p99) in sorted(result["by_kind"].items()):
        lines.append(f"| latency p50 / p99, {kind} ({n:,}) | {p50 * 1000:.0f} ms / {p99 * 1000:.0f} ms | |")
    lines += [
        f"| errors | {len(result['errors'])} | 0 |",
        f"| server memory (RSS): started → after {args.warmup:,} warm-up requests → after {result['requests']:,} more | "
        f"{rss_started / 2**20:.0f} → {rss_before / 2**20:.0f} → {result['rss_after'] / 2**20:.0f} MiB "
        f"({growth:+.1%} after warm-up) | < +10% |",
        "",
        f"Server RSS in MiB by requests answered: {trace}.",
        "",
        f"The model alone ran with the server stopped, {alone['callers']} caller threads at once (one per forward pass "
        "the runtime runs side by side), in rounds alternating the two ways "
        f"(same mix: {', '.join(f'{x:.0f}' for x in alone['runs']['same'])}; batches of {QUEUE_BATCH}: "
        f"{', '.join(f'{x:.0f}' for x in alone['runs']['batch16'])} reviews/s). The gap between served and the same "
        "requests is what the serving layer costs: HTTP, Gradio's queue and event stream, JSON, and the Python that "
        f"shares the cores with the model. With no model at all the same clients get {ceiling_rps:.0f} requests/s, "
        f"{1000 / ceiling_rps:.1f} ms of serving per request; the model alone needs "
        f"{1000 * result['reviews'] / result['requests'] / alone['same']:.1f} ms of the cores per request of this mix.",
        "",
    ]
    if result["errors"]:
        lines += ["First errors:", "", *[f"- `{e}`" for e in result["errors"][:5]], ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(text, heading=f"## Load: {Path(args.model).name}")
        print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
