"""A bounded load test of app.py: concurrent clients, a mix of good and bad requests, server memory.

Usage:
    python bench/load.py --model models/nsmc-small   # both APIs: 16 clients, 60 s, then up to 10,000 requests
    python bench/load.py --model DIR --api json --clients 16 --seconds 60 --requests 10000 --no-write
    python bench/load.py --model .cache/bench/kcbert-base --requests 0 --warmup 300
        # kcbert-base's architecture and vocabulary with random weights (bench/speed.py builds it from
        # ../shared/kcbert-base): its compute per review, so it shows the serving layer's share at that size

For each API (--api both: Gradio's, then the JSON one), starts `python app.py --model DIR` on
127.0.0.1 (offline) and warms it up with --warmup requests from all clients at once. Then N client
threads, each one keep-alive connection, call it:
  gradio: Gradio's plain HTTP API with one Gradio session per client, as `gradio_client.Client`
          keeps (POST /gradio_api/call/<api>, then read the event stream);
  json:   app.py's JSON API (POST /api/predict, nsmc/api.py).
The mix: 70% single NSMC test reviews, 15% batches of 8-32 reviews, 15% bad inputs that must still
be answered (empty, blank, 100,000 characters, lone surrogates, markup, a number, null). It runs for
--seconds, then keeps going until --requests requests have been answered, and reports requests/s and
reviews/s, p50/p99 latency, errors (HTTP failures, error events, malformed answers), and the
server's resident memory at start, after warm-up, every 5 s, and after the last request. Right after
each API's run, with no server running, it measures the model alone on the same cores (the machine's
speed drifts between minutes, so each API is compared with its own neighbour): the same request mix
one request at a time, and batches of 16 (see model_alone). The same clients then run 20 s against a
server whose forward passes return a constant (the serving layer's own ceiling). It writes the
`## Load: <model>` section of bench/RESULTS.md (other sections are left alone).

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
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from app_server import free_port, running_app  # noqa: E402  (the launcher the tests use too)
from speed import DATA, RESULTS, machine, write_section  # noqa: E402  (one writer of RESULTS.md sections)

QUEUE_BATCH = 16  # a batch size to compare with: the model alone on batches of 16 reviews
BAD_INPUTS = [
    "",
    "   \n\t",
    "정말 " * 50_000,
    "\udc00 깨진 \ud800",
    "<script>alert(1)</script> 최고",
    12345,
    None,
]


def reviews(limit: int = 5000) -> list[str]:
    from nsmc.corpus import read_ratings

    for path in (DATA / "ratings_test.txt.gz", ROOT / "tests/fixtures/ratings_test.txt"):
        if path.exists():
            return read_ratings(path).documents[:limit]
    raise SystemExit("no NSMC test file found")


class Connection:
    """One client's keep-alive connection to the server."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, str]:
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


class GradioApi(Connection):
    """Gradio's plain HTTP API with one session, as `gradio_client.Client` keeps (a browser tab is
    one session too): a call is a POST, then a read of its event stream."""

    def __init__(self, port: int):
        super().__init__(port)
        self.session = uuid.uuid4().hex

    def call(self, api: str, *data) -> tuple[str, object]:
        status, body = self.request(
            "POST",
            f"/gradio_api/call/{api}",
            json.dumps({"data": list(data), "session_hash": self.session}).encode(),
        )
        if status != 200:
            return "http", f"{status} {body[:200]}"
        status, stream = self.request("GET", f"/gradio_api/call/{api}/{json.loads(body)['event_id']}")
        events = re.findall(r"event: (\w+)\ndata: (.*)", stream)
        final = [(e, d) for e, d in events if e in ("complete", "error")]
        if status != 200 or not final:
            return "http", f"{status} {stream[:200]}"
        event, data = final[-1]
        return event, json.loads(data) if event == "complete" else data

    def single(self, value) -> tuple[bool, str]:
        event, out = self.call("predict", value)
        ok = event == "complete" and valid_label(out[0])
        return ok, "" if ok else f"{event}: {str(out)[:200]}"

    def batch(self, values: list) -> tuple[bool, str]:
        event, out = self.call("predict_batch", values)
        ok = (
            event == "complete"
            and len(out[0]) == len(values)
            and all(abs(row["negative"] + row["positive"] - 1) < 1e-3 for row in out[0])
        )
        return ok, "" if ok else f"{event}: {str(out)[:200]}"


class JsonApi(Connection):
    """app.py's plain JSON route (nsmc/api.py): one POST, one answer."""

    def call(self, payload: dict, n: int) -> tuple[bool, str]:
        status, body = self.request("POST", "/api/predict", json.dumps(payload).encode())
        try:
            preds = json.loads(body)["predictions"] if status == 200 else None
        except (ValueError, KeyError):
            preds = None
        ok = (
            preds is not None
            and len(preds) == n
            and all(
                p["label"] is None if p["scores"] is None else abs(sum(p["scores"].values()) - 1) < 1e-3
                for p in preds
            )
        )
        return ok, "" if ok else f"{status}: {body[:200]}"

    def single(self, value) -> tuple[bool, str]:
        return self.call({"text": value}, 1)

    def batch(self, values: list) -> tuple[bool, str]:
        return self.call({"texts": values}, len(values))


APIS = {"gradio": GradioApi, "json": JsonApi}
ROUTES = {
    "gradio": "Gradio's API (`POST /gradio_api/call/<name>`, then its event stream; a session a client)",
    "json": "the JSON API (`POST /api/predict`, one answer)",
}


def valid_label(value) -> bool:
    """A gr.Label answer: probabilities summing to 1, or (blank input) a message and no confidences."""
    if not isinstance(value, dict):
        return False
    if value.get("confidences") is None:
        return isinstance(value.get("label"), str)
    return abs(sum(c["confidence"] for c in value["confidences"]) - 1) < 1e-3


def draw(rng: random.Random, texts: list[str]) -> tuple[str, object]:
    """One request of the mix: (kind, input)."""
    r = rng.random()
    if r < 0.70:
        return "single", rng.choice(texts)
    if r < 0.85:
        return "batch", rng.sample(texts, rng.randint(8, 32))
    return "bad", rng.choice(BAD_INPUTS)


def one_request(api, rng: random.Random, texts: list[str]) -> tuple[str, bool, int, str]:
    """(kind, ok, reviews scored, detail)."""
    kind, value = draw(rng, texts)
    ok, detail = api.batch(value) if kind == "batch" else api.single(value)
    return kind, ok, len(value) if kind == "batch" else 1, detail


def server_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))


def run_load(
    api: type, port: int, pid: int, texts: list[str], clients: int, seconds: float, total: int, seed: int
) -> dict:
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {"single": [], "batch": [], "bad": []}
    errors: list[str] = []
    counts = {"requests": 0, "reviews": 0}
    window: dict = {}
    start = time.perf_counter()
    stop = threading.Event()

    def client(i: int) -> None:
        conn, rng = api(port), random.Random(seed + i)
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                kind, ok, n, detail = one_request(conn, rng, texts)
            except (
                Exception
            ) as e:  # a dropped connection or a timeout is an error too, not a crash of the bench
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
        requests=counts["requests"],
        reviews=counts["reviews"],
        seconds=elapsed,
        window=window,
        errors=errors,
        p50=float(np.percentile(every, 50)),
        p99=float(np.percentile(every, 99)),
        by_kind={
            k: (len(v), float(np.percentile(v, 50)), float(np.percentile(v, 99)))
            for k, v in latencies.items()
            if v
        },
        rss_after=server_rss(pid),
        rss_trace=trace[:: max(1, len(trace) // 12)],
    )


def model_alone(model: str, seconds: float, seed: int) -> dict:
    """The model with no server, in a fresh process on the same cores (the server stopped), kept as
    busy as the cores allow: as many caller threads as the runtime runs forward passes at once
    (one per core for ONNX). Two workloads, in alternating rounds:
    `same`: the load's own request mix, drawn by the same generator, each caller sending one request
    after another through the calls the app's handlers make (the serving layer's cost is the gap);
    `batch16`: test reviews in batches of 16 (the model's rate barely differs between 16 and 32).
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
    from nsmc.corpus import as_text
    from nsmc.inference import TextClassifier

    clf = TextClassifier.load(model, log=lambda *a: None)
    texts = reviews()
    sixteens = [texts[i : i + QUEUE_BATCH] for i in range(0, len(texts), QUEUE_BATCH)]

    def same(rng: random.Random) -> int:  # what app.predict / app.score do with the request, minus the server
        kind, value = draw(rng, texts)
        if kind == "batch":
            return len(clf.predict_proba([as_text(t) for t in value]))
        return len(clf.predict([as_text(value)]))

    def batch16(rng: random.Random) -> int:
        return len(clf.predict_proba(rng.choice(sixteens)))

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
    """Offline, and without the caller's MODEL_DIR or GRADIO_AUTH (a login would make every request a 401)."""
    from app_server import app_env

    return app_env()


def log_file() -> Path:
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-load-{free_port()}.log"


def serving_alone(api: type, model: str, texts: list[str], clients: int, seconds: float, seed: int) -> dict:
    """The same clients and mix against app.py with the model's forward passes replaced by a
    constant: the requests/s the serving layer itself allows on these cores, whatever the model."""
    with running_app(model, log_file(), no_model=True) as (url, proc):
        port = urlparse(url).port
        run_load(api, port, proc.pid, texts, clients, 0, 200, seed - 2000)  # warm-up
        return run_load(api, port, proc.pid, texts, clients, seconds, 0, seed)


def serve(api: type, args: argparse.Namespace, texts: list[str]) -> dict:
    """One API under load: a fresh server, a warm-up, the measured run, and memory all along."""
    with running_app(args.model, log_file()) as (url, proc):
        port = urlparse(url).port
        rss_started = server_rss(proc.pid)
        # Warm-up at full concurrency: the worker threads, their allocator arenas and the session
        # store fill up once; growth after that is what a long-running server would show.
        run_load(api, port, proc.pid, texts, args.clients, 0, args.warmup, args.seed - 1000)
        rss_before = server_rss(proc.pid)
        load_before = os.getloadavg()[0]
        result = run_load(api, port, proc.pid, texts, args.clients, args.seconds, args.requests, args.seed)
    # Right after the run, before the ceiling: this machine's speed drifts from one minute to the next.
    alone = model_alone(args.model, seconds=40, seed=args.seed)
    ceiling = serving_alone(api, args.model, texts, args.clients, 20, args.seed)
    return result | dict(
        alone=alone,
        rss_started=rss_started,
        rss_before=rss_before,
        load_before=load_before,
        served=result["reviews"] / result["seconds"],
        ceiling_rps=ceiling["requests"] / ceiling["seconds"],
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(ROOT / "models" / "nsmc-small"))
    parser.add_argument("--api", choices=["both", *APIS], default="both", help="which API the clients call")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--requests", type=int, default=10_000, help="keep going after --seconds until this many"
    )
    parser.add_argument("--warmup", type=int, default=1000, help="requests before memory is first measured")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)

    texts = reviews()
    names = list(APIS) if args.api == "both" else [args.api]
    runs = {name: serve(APIS[name], args, texts) for name in names}

    cpu = machine()
    model = os.path.relpath(args.model, ROOT) if Path(args.model).is_absolute() else args.model
    per_request_ms = {n: 1000 * r["reviews"] / r["requests"] / r["alone"]["same"] for n, r in runs.items()}

    def row(label: str, cell, target: str = "") -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in runs.values()) + f" | {target} |"

    lines = [
        f"## Load: {Path(args.model).name}",
        "",
        f"`python bench/load.py --model {model} --api {args.api} --clients {args.clients} --seconds "
        f"{args.seconds:g} "
        f"--requests {args.requests} --warmup {args.warmup}` on this machine: {cpu['cores']} usable CPU "
        "cores "
        f"({cpu['cpu']}), server and clients on the same cores. "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Mix: 70% single reviews (NSMC test reviews), 15% batches of 8-32 reviews, 15% bad inputs that "
        "must still be "
        "answered (empty, blank, 100,000 characters, lone surrogates, `<script>`, a number, null), from "
        f"{args.clients} "
        "clients, each one keep-alive connection calling "
        + "; or ".join(ROUTES[n] for n in names)
        + ". Each API gets "
        "a fresh server.",
        "",
        "| measure | " + " | ".join(f"{n} API" for n in names) + " | target |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- |",
        row(
            f"requests (first {args.seconds:g} s / all)",
            lambda r: f"{r['window'].get('requests', 0):,} / {r['requests']:,} in {r['seconds']:.0f} s",
        ),
        row("requests/s", lambda r: f"{r['requests'] / r['seconds']:.1f}"),
        row("reviews/s served", lambda r: f"{r['served']:.1f}"),
        row("reviews/s, model alone, the same request mix (no server, right after)",
            lambda r: f"{r['alone']['same']:.1f}"),
        row(
            "**served / model alone on the same requests**",
            lambda r: f"**{r['served'] / r['alone']['same']:.0%}**",
            "≥ 80%",
        ),
        row(
            f"reviews/s, model alone, batches of {QUEUE_BATCH} test reviews",
            lambda r: f"{r['alone']['batch16']:.1f}",
        ),
        row(
            f"served / model alone in batches of {QUEUE_BATCH}",
            lambda r: f"{r['served'] / r['alone']['batch16']:.0%}",
        ),
        row(
            "requests/s with no model (forward passes replaced by a constant): the serving layer's ceiling "
            "here",
            lambda r: f"{r['ceiling_rps']:.1f} ({1000 / r['ceiling_rps']:.1f} ms a request)",
        ),
        row(
            "latency p50 / p99, all requests",
            lambda r: f"{r['p50'] * 1000:.0f} ms / {r['p99'] * 1000:.0f} ms",
        ),
    ]
    for kind in ("single", "batch", "bad", "error"):
        if any(kind in r["by_kind"] for r in runs.values()):
            lines.append(
                row(
                    f"latency p50 / p99, {kind}",
                    lambda r: (
                        "-"
                        if kind not in r["by_kind"]
                        else "{1:.0f} ms / {2:.0f} ms ({0:,})".format(
                            r["by_kind"][kind][0], *(1000 * x for x in r["by_kind"][kind][1:])
                        )
                    ),
                )
            )
    lines += [
        row("errors", lambda r: str(len(r["errors"])), "0"),
        row(
            f"server memory (RSS): started → after {args.warmup:,} warm-up requests → after the run",
            lambda r: (
                f"{r['rss_started'] / 2**20:.0f} → {r['rss_before'] / 2**20:.0f} → "
                f"{r['rss_after'] / 2**20:.0f} MiB "
                f"({r['rss_after'] / r['rss_before'] - 1:+.1%} after warm-up)"
            ),
            "< +10%",
        ),
        row("1-minute load average after the warm-up (mostly its own)", lambda r: f"{r['load_before']:.1f}"),
        "",
    ]
    for name, r in runs.items():
        trace = ", ".join(f"{n:,}: {rss / 2**20:.0f}" for n, rss in r["rss_trace"])
        lines += [f"Server RSS in MiB by requests answered, {name} API: {trace}.", ""]
    alone = {name: r["alone"] for name, r in runs.items()}
    callers = next(iter(alone.values()))["callers"]
    lines += [
        f"The model alone ran right after each API's run, with the server stopped, {callers} caller threads "
        "at once (one per forward pass the runtime runs side by side), in rounds alternating the two ways ("
        + "; ".join(f"after the {name} run, same mix: {', '.join(f'{x:.0f}' for x in a['runs']['same'])}, "
                    f"batches of {QUEUE_BATCH}: {', '.join(f'{x:.0f}' for x in a['runs']['batch16'])}"
                    for name, a in alone.items())
        + " reviews/s); it needs "
        + ", ".join(
            f"{ms:.1f} ms of the cores per request of the {n} run's mix" for n, ms in per_request_ms.items()
        )
        + ". The gap between served and the same requests is what the serving layer costs: HTTP, JSON, the "
          "API's queue "
        "(Gradio's queue and event stream, or the JSON API's batcher), and the Python that shares the cores "
        "with the "
        "model and the clients.",
        "",
    ]
    for name, r in runs.items():
        if r["errors"]:
            lines += [f"First errors, {name} API:", "", *[f"- `{e}`" for e in r["errors"][:5]], ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(text, heading=f"## Load: {Path(args.model).name}")
        print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
