"""Scoring a big file, three ways side by side: `python -m nsmc.predict` (streaming), app.py's JSON API, and
the tutorial's one-at-a-time inference. Reports reviews/s and peak memory.

Usage (from the project root; not part of the test run):

    .venv/bin/python bench/predict.py --model models/nsmc-small --rows 1000000     # the real run
    .venv/bin/python bench/predict.py --rows 20000 --tutorial-rows 300 --no-write   # a quick look

The input is a CSV of --rows rows (`id,document`) cycled from the NSMC reviews in $NSMC_DATA (train, test
and the unlabeled reviews), built once in .cache/bench/. Each way runs in its own process:
  stream    `python -m nsmc.predict --model M IN OUT.csv` (default runtime), on --rows rows and on a
            tenth of them: the same peak memory for both is what "flat" means;
  json API  `python app.py --model M` (default runtime); --api-clients threads POST the same rows to
            /api/predict, --api-batch reviews a request; the server's peak RSS (VmHWM) and reviews/s
            from the first request to the last answer;
  tutorial  bench/tutorial.py's inference_fn (slow tokenizer, padded to 128, fp32), one review at a time,
            on the first --tutorial-rows rows only (its rate, extrapolated: 1,000,000 would take hours).
Reviews/s exclude start-up (imports, model loading); the stream's wall time with them is shown too.
Peak memory is each process's VmHWM. The `## Scoring a file` section of bench/RESULTS.md is rewritten
unless --no-write.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from app_server import app_env, free_port, running_app  # noqa: E402
from load import JsonApi  # noqa: E402
from speed import CACHE, DATA, machine, slow_vocab_for, write_section  # noqa: E402

MB = 1024 * 1024
# Runs a command's module and reports the process's own peak RSS as it exits (ru_maxrss would not do:
# after fork + exec it starts at the parent's peak).
PEAK = """
import runpy, sys
sys.argv = {argv!r}
sys.path.insert(0, {root!r})
try:
    runpy.run_module({module!r}, run_name="__main__")
finally:
    peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print("PEAK_RSS", peak, file=sys.stderr, flush=True)
"""


def vm_hwm(pid: int | str = "self") -> int:
    """A process's peak RSS (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def reviews_file(rows: int) -> Path:
    """A CSV of `rows` NSMC reviews (id, document), built once."""
    path = CACHE / f"predict-{rows}.csv"
    if path.is_file():
        return path
    from nsmc.corpus import read_lines, read_ratings

    log(f"Building {path} ({rows:,} rows)...")
    texts = [*read_ratings(DATA / "ratings_train.txt.gz").documents,
             *read_ratings(DATA / "ratings_test.txt.gz").documents]
    if rows > len(texts):
        texts += read_lines(DATA / "reviews_unlabeled.txt.gz")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "document"])
        writer.writerows((i, texts[i % len(texts)]) for i in range(rows))
    os.replace(tmp, path)
    return path


def head(path: Path, n: int) -> Path:
    """The first n rows of a reviews file, as its own file."""
    out = path.with_name(f"{path.stem}-head{n}.csv")
    if not out.is_file():
        with open(path, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
            dst.writelines(line for _, line in zip(range(n + 1), src))  # the header and n one-line rows
    return out


def documents(path: Path, limit: int | None = None) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        next(rows)
        return [row[1] for _, row in zip(range(limit or 10**12), rows)]


def stream(model: str, source: Path) -> dict:
    """`python -m nsmc.predict` in a child process: reviews/s of its scoring, wall time, peak RSS."""
    out = CACHE / "predict-out.csv"
    argv = ["nsmc.predict", "--model", model, str(source), str(out), "--overwrite"]
    code = PEAK.format(argv=argv, root=str(ROOT), module="nsmc.predict")
    t0 = time.perf_counter()
    # The user's environment: tokenizers may use every core (app_env() turns that off for app.py).
    child_env = {k: v for k, v in app_env().items() if k != "TOKENIZERS_PARALLELISM"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"nsmc.predict failed:\n{proc.stderr[-3000:]}")
    scored = re.search(r"Wrote ([\d,]+) rows .*?, ([\d.,]+) s, ", proc.stdout)
    rows, seconds = int(scored[1].replace(",", "")), float(scored[2].replace(",", ""))
    peak = int(re.search(r"PEAK_RSS (\d+)", proc.stderr)[1])
    out.unlink(missing_ok=True)
    return {"rows": rows, "reviews_per_s": rows / seconds, "wall_s": wall, "peak_rss_mb": peak / MB}


def json_api(model: str, source: Path, clients: int, batch: int) -> dict:
    """app.py serving, `clients` threads sending the file's reviews `batch` at a time."""
    texts = documents(source)
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    port = free_port()
    with running_app(model, CACHE / "predict-app.log", port=port) as (_, server):
        JsonApi(port).batch(texts[:64])  # warm-up
        lock, errors, next_batch = threading.Lock(), [], iter(batches)

        def client() -> None:
            api = JsonApi(port)
            while True:
                with lock:
                    values = next(next_batch, None)
                if values is None:
                    return
                ok, detail = api.batch(values)
                if not ok:
                    errors.append(detail)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        peak = vm_hwm(server.pid)
    if errors:
        raise SystemExit(f"the JSON API failed {len(errors)} requests, e.g. {errors[0]}")
    return {"rows": len(texts), "reviews_per_s": len(texts) / seconds, "peak_rss_mb": peak / MB}


def tutorial(model: str, source: Path, rows: int) -> dict:
    argv = ["predict.py", "--worker", "tutorial", "--model", model, "--rows-file", str(source),
            "--tutorial-rows", str(rows)]
    code = PEAK.format(argv=argv, root=str(ROOT / "bench"), module="predict")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=app_env(), capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"the tutorial worker failed:\n{proc.stderr[-3000:]}")
    result = json.loads(re.search(r"RESULT (.*)", proc.stdout)[1])
    return {**result, "peak_rss_mb": int(re.search(r"PEAK_RSS (\d+)", proc.stderr)[1]) / MB}


def tutorial_worker(args) -> None:
    """The tutorial's deploy inference_fn, one review at a time, over the first rows of the file."""
    from nsmc.inference import set_threads
    from nsmc.loading import load_classifier
    from tutorial import TutorialInference, slow_tokenizer

    set_threads()
    model_dir = Path(args.model)
    model, fast = load_classifier(model_dir)
    tut = TutorialInference(model, slow_tokenizer(slow_vocab_for(model_dir, fast)))
    texts = documents(Path(args.rows_file), args.tutorial_rows)
    for t in texts[:3]:  # warm-up
        tut.inference_fn(t)
    t0 = time.perf_counter()
    for t in texts:
        tut.inference_fn(t)
    rate = len(texts) / (time.perf_counter() - t0)
    print("RESULT " + json.dumps({"rows": len(texts), "reviews_per_s": rate}))


def report(res: dict, command: str) -> str:
    m = res["machine"]
    n, small = res["rows"], res["rows"] // 10
    eta = lambda r: f"{n / r['reviews_per_s'] / 60:,.1f} min"  # noqa: E731
    lines = [
        "## Scoring a file", "",
        f"`{command}`: {n:,} NSMC reviews in a CSV, scored three ways on {m['cores']} cores ({m['cpu']}), "
        f"model `{res['model']}`; load average before: {m['load_before']}.", "",
        f"| way | reviews/s | {n:,} reviews take | peak memory |",
        "| --- | --- | --- | --- |",
        f"| `python -m nsmc.predict` (streaming, {res['runtime']}) | {res['stream']['reviews_per_s']:,.0f} | "
        f"{eta(res['stream'])} (wall with start-up: {res['stream']['wall_s'] / 60:,.1f} min) | "
        f"{res['stream']['peak_rss_mb']:,.0f} MB ({res['stream_small']['peak_rss_mb']:,.0f} MB "
        f"for {small:,}) |",
        f"| app.py JSON API ({res['api_clients']} clients, {res['api_batch']:,} reviews a request, "
        f"first {res['api']['rows']:,} reviews) | "
        f"{res['api']['reviews_per_s']:,.0f} | {eta(res['api'])} | "
        f"{res['api']['peak_rss_mb']:,.0f} MB (server) |",
        f"| tutorial `inference_fn`, one review at a time (first {res['tutorial']['rows']:,} reviews) | "
        f"{res['tutorial']['reviews_per_s']:,.1f} | {eta(res['tutorial'])} (extrapolated) | "
        f"{res['tutorial']['peak_rss_mb']:,.0f} MB |",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/nsmc-small")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--api-clients", type=int, default=4)
    parser.add_argument("--api-batch", type=int, default=1000,
                        help="reviews a request (the API takes up to 5,000)")
    parser.add_argument("--api-rows", type=int, help="rows the JSON API scores (default: --rows)")
    parser.add_argument("--tutorial-rows", type=int, default=2000)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "tutorial":
        return tutorial_worker(args)

    from nsmc.runtime import DEFAULT_RUNTIME

    res = {"model": args.model, "rows": args.rows, "runtime": DEFAULT_RUNTIME, "machine": machine(),
           "api_clients": args.api_clients, "api_batch": args.api_batch}
    source = reviews_file(args.rows)
    log("Building the ONNX graph if it is not cached yet (a first export would inflate peak memory)")
    warm = f"from nsmc.inference import TextClassifier; TextClassifier.load({args.model!r})"
    subprocess.run([sys.executable, "-c", warm], cwd=ROOT, env=app_env(), check=True, capture_output=True)
    log(f"stream: {args.rows // 10:,} rows")
    res["stream_small"] = stream(args.model, head(source, args.rows // 10))
    log(f"stream: {args.rows:,} rows")
    res["stream"] = stream(args.model, source)
    s, small = res["stream"], res["stream_small"]
    log(f"stream: {s['reviews_per_s']:,.0f} reviews/s, peak {s['peak_rss_mb']:,.0f} MB "
        f"({small['peak_rss_mb']:,.0f} MB for a tenth)")
    log("JSON API")
    api_source = head(source, args.api_rows) if args.api_rows else source
    res["api"] = json_api(args.model, api_source, args.api_clients, args.api_batch)
    log(f"JSON API: {res['api']['reviews_per_s']:,.0f} reviews/s, server peak "
        f"{res['api']['peak_rss_mb']:,.0f} MB")
    log(f"tutorial: {args.tutorial_rows:,} rows one at a time")
    res["tutorial"] = tutorial(args.model, source, args.tutorial_rows)
    log(f"tutorial: {res['tutorial']['reviews_per_s']:,.1f} reviews/s, peak "
        f"{res['tutorial']['peak_rss_mb']:,.0f} MB")
    command = "python bench/predict.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(res, command.strip())
    print(text)
    (CACHE / f"predict-{args.rows}.json").write_text(json.dumps(res, indent=1))
    if not args.no_write:
        write_section(text, heading="## Scoring a file")


if __name__ == "__main__":
    main()
