"""Test-split accuracy of each serving runtime, and how often it predicts what torch fp32 predicts.

Usage (from the project root; not part of the test run):

    .venv/bin/python bench/accuracy_runtimes.py --model models/nsmc-small            # whole test split (50k)
    .venv/bin/python bench/accuracy_runtimes.py --model runs/X/export --limit 2000 --no-write

Every runtime goes through the app's path (nsmc.inference.TextClassifier.predict_proba: its batcher cuts
the texts into passes of up to 32 sorted by length). The rule from the issue: a faster runtime may become
the default only if its accuracy is at most 0.2 points below fp32's. Writes a `## Runtime accuracy` section
to bench/RESULTS.md (other sections are kept) and the raw numbers to .cache/bench/accuracy-*.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import numpy as np  # noqa: E402

from speed import CACHE, DATA, RESULTS, classifier, log, machine, write_section  # noqa: E402

MAX_DROP_POINTS = 0.2


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models/nsmc-small")
    parser.add_argument(
        "--runtimes", default="torch,int8,onnx,onnx-int8", help="the first one is the reference (fp32)"
    )
    parser.add_argument("--data", default=str(DATA / "ratings_test.txt.gz"))
    parser.add_argument("--limit", type=int, default=0, help="only the first N test reviews (a quick check)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    from nsmc.corpus import LABELS, read_ratings
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file() and not model_dir.is_file():
        sys.exit(f"No model at {model_dir}: pass --model DIR (an exported model folder).")
    ratings = read_ratings(args.data)
    texts, labels = ratings.documents, np.asarray(ratings.labels)
    if args.limit:
        texts, labels = texts[: args.limit], labels[: args.limit]
    runtimes = args.runtimes.split(",")
    rows, ref_pred, ref_probs = {}, None, None
    for rt in runtimes:
        clf = classifier(model_dir, rt)
        cols = [LABELS.index(n) for n in clf.label_names]  # model column -> dataset label
        t0 = time.perf_counter()
        probs = clf.predict_proba(texts)
        seconds = time.perf_counter() - t0
        pred = np.asarray(cols)[probs.argmax(1)]
        if ref_pred is None:
            ref_pred, ref_probs = pred, probs
        acc = float((pred == labels).mean())
        diff = np.abs(probs - ref_probs)
        rows[rt] = {"accuracy": acc, "agreement": float((pred == ref_pred).mean()),
                    "flipped": int((pred != ref_pred).sum()),
                    "max_abs_prob_diff": float(diff.max()), "mean_abs_prob_diff": float(diff.mean()),
                    "seconds": seconds, "reviews_per_s": len(texts) / seconds}
        log(f"{rt}: accuracy {acc:.4%}, agreement with {runtimes[0]} {rows[rt]['agreement']:.4%}, "
            f"{seconds:.1f} s")
        del clf
    base = rows[runtimes[0]]["accuracy"]
    for r in rows.values():
        r["drop_points"] = (base - r["accuracy"]) * 100 + 0.0
        r["qualifies"] = r["drop_points"] <= MAX_DROP_POINTS
    m = machine()
    command = " ".join(
        [".venv/bin/python", "bench/accuracy_runtimes.py", *(argv if argv is not None else sys.argv[1:])]
    )
    lines = ["## Runtime accuracy", "",
             f"Command: `{command}`  ",
             (f"Model: `{model_dir}`; {len(texts):,} reviews of `{Path(args.data).name}`; "
              f"reference: {runtimes[0]}; {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC "
              f"on {m['cpu']} ({m['cores']} cores), torch {m['torch']}, onnxruntime {m['onnxruntime']}  "),
             (f"Rule: a runtime may become the default only if its accuracy is at most {MAX_DROP_POINTS} "
              f"points below {runtimes[0]}'s. The reviews/s column comes from runtimes run one after "
              "another, not interleaved: a rough guide only (see ## Speed)."), "",
             (f"| runtime | accuracy | change (points) | agreement with {runtimes[0]} | predictions flipped "
              "| max / mean abs prob diff | reviews/s (batches of 32) | may be default |"),
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for rt, r in rows.items():
        lines.append(f"| {rt} | {r['accuracy']:.2%} | {(r['accuracy'] - base) * 100 + 0.0:+.2f} "
                     f"| {r['agreement']:.2%} | {r['flipped']:,} "
                     f"| {r['max_abs_prob_diff']:.4f} / {r['mean_abs_prob_diff']:.5f} "
                     f"| {r['reviews_per_s']:,.0f} | {'yes' if r['qualifies'] else 'no'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    CACHE.mkdir(parents=True, exist_ok=True)
    raw = CACHE / f"accuracy-{model_dir.resolve().name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw_numbers = {"model": str(model_dir), "n": len(texts), "rows": rows, "machine": m}
    raw.write_text(json.dumps(raw_numbers, indent=1), encoding="utf-8")
    if not args.no_write:
        write_section(text, RESULTS, "## Runtime accuracy")
        log(f"Wrote the ## Runtime accuracy section of {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
