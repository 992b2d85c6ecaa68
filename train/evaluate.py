"""Score a model on an NSMC split: accuracy, F1, confusion matrix, accuracy by review length.

Usage:
    python -m train.evaluate MODEL --corpus-dir ../shared/data/nsmc --split test
    python -m train.evaluate runs/nsmc/checkpoints/best.ckpt --corpus-dir DIR --out reports/best
    python -m train.evaluate models/nsmc-small --corpus-dir DIR --split test --record   # into MODEL/metrics.json

MODEL is an exported folder or a Lightning .ckpt. Writes OUT/report.json and OUT/confusion.png
(OUT defaults to MODEL's folder + /eval-SPLIT). Prediction goes through nsmc.inference, the
app's own code path, so the numbers are what the app serves.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from nsmc.errors import UserError

BUCKETS = [(0, 10), (10, 20), (20, 40), (40, 80), (80, 10**9)]  # characters; NSMC reviews are < 140


def scores(labels: np.ndarray, preds: np.ndarray) -> dict:
    tp = int(((preds == 1) & (labels == 1)).sum())
    fp = int(((preds == 1) & (labels == 0)).sum())
    fn = int(((preds == 0) & (labels == 1)).sum())
    tn = int(((preds == 0) & (labels == 0)).sum())
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    return {"accuracy": (tp + tn) / max(len(labels), 1), "f1": 2 * precision * recall / max(precision + recall, 1e-12),
            "precision": precision, "recall": recall, "confusion": [[tn, fp], [fn, tp]], "n": int(len(labels))}


def by_length(documents: list[str], labels: np.ndarray, preds: np.ndarray) -> list[dict]:
    lengths = np.array([len(d) for d in documents])
    rows = []
    for lo, hi in BUCKETS:
        mask = (lengths >= lo) & (lengths < hi)
        if mask.any():
            rows.append({"chars": f"{lo}-{hi - 1}" if hi < 10**9 else f"{lo}+", "n": int(mask.sum()),
                         "accuracy": float((preds[mask] == labels[mask]).mean())})
    return rows


def plot_confusion(confusion, names, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.array(confusion)
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=120)
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v:,}\n{v / m.sum():.1%}", ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_xticks([0, 1], [f"pred {n}" for n in names])
    ax.set_yticks([0, 1], [f"true {n}" for n in names])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate(model_path: str, corpus_dir: str, split: str = "test", out: str | None = None, base_model: str | None = None,
             batch_size: int = 64) -> dict:
    from nsmc.corpus import LABELS, find_split, read_ratings
    from nsmc.inference import TextClassifier, set_threads

    set_threads()
    clf = TextClassifier.load(model_path, base_model=base_model)
    ratings = read_ratings(find_split(corpus_dir, split))
    print(ratings.summary())
    start = time.time()
    probs = np.concatenate([clf.predict_proba(ratings.documents[i : i + 4096])
                            for i in progress(range(0, len(ratings), 4096), len(ratings))])
    seconds = time.time() - start
    labels, preds = np.array(ratings.labels), probs.argmax(1)
    report = {"model": str(model_path), "parameters": sum(p.numel() for p in clf.model.parameters()),
              "split": split, "file": ratings.path, "skipped_rows": ratings.n_skipped,
              **scores(labels, preds), "by_length": by_length(ratings.documents, labels, preds),
              "seconds": round(seconds, 1), "reviews_per_second": round(len(labels) / max(seconds, 1e-9), 1)}
    out_dir = Path(out) if out else (Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent) / f"eval-{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    plot_confusion(report["confusion"], LABELS, out_dir / "confusion.png", f"{Path(model_path).name} on NSMC {split}: accuracy {report['accuracy']:.2%}")
    report["out_dir"] = str(out_dir)
    return report


def progress(chunks, total: int):
    for i in chunks:
        print(f"\r  predicting {min(i + 4096, total):,}/{total:,}", end="", file=sys.stderr, flush=True)
        yield i
    print(file=sys.stderr)


def print_report(r: dict) -> None:
    (tn, fp), (fn, tp) = r["confusion"]
    print(f"{r['model']} on {r['split']} ({r['n']:,} reviews, {r['reviews_per_second']:,.0f} reviews/s)")
    print(f"  accuracy {r['accuracy']:.4f}   F1 {r['f1']:.4f}   precision {r['precision']:.4f}   recall {r['recall']:.4f}")
    print(f"  confusion      pred neg  pred pos\n  true negative  {tn:8,}  {fp:8,}\n  true positive  {fn:8,}  {tp:8,}")
    print("  by length (characters): " + ", ".join(f"{b['chars']}: {b['accuracy']:.3f} (n={b['n']:,})" for b in r["by_length"]))
    print(f"  report: {r['out_dir']}/report.json, confusion matrix: {r['out_dir']}/confusion.png")


def refresh_model_card(model_dir: Path, metrics: dict, n_params: int) -> None:
    """Rewrite MODEL/README.md with the new numbers (the card `python -m train.export` wrote)."""
    import yaml

    from train.export import model_card

    settings_file = model_dir / "train_config.yaml"
    settings = yaml.safe_load(settings_file.read_text()) if settings_file.is_file() else {}
    (model_dir / "README.md").write_text(model_card(model_dir, settings, metrics, n_params), encoding="utf-8")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an exported model folder or a .ckpt")
    parser.add_argument("--corpus-dir", "--corpus_dir", required=True, help="folder with ratings_{split}.txt(.gz)")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--out", help="where report.json and confusion.png go")
    parser.add_argument("--base-model", help="for a .ckpt that carries no tokenizer")
    parser.add_argument("--record", action="store_true", help="write the split's accuracy and F1 into MODEL/metrics.json")
    args = parser.parse_args(argv)
    try:
        report = evaluate(args.model, args.corpus_dir, args.split, args.out, args.base_model)
    except UserError as e:
        sys.exit(f"error: {e}")
    print_report(report)
    if args.record and Path(args.model).is_dir():
        path = Path(args.model) / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        metrics.update({f"{args.split}_acc": round(report["accuracy"], 5), f"{args.split}_f1": round(report["f1"], 5),
                        f"{args.split}_n": report["n"]})
        path.write_text(json.dumps(metrics, indent=2) + "\n")
        refresh_model_card(Path(args.model), metrics, report["parameters"])
        print(f"  recorded in {path} and the model card")


if __name__ == "__main__":
    main()
