"""Score a model on labelled data: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix,
accuracy by text length.

Usage:
    python -m train.evaluate MODEL --corpus-dir ../shared/data/nsmc --split test
    python -m train.evaluate MODEL --test_file F --text_column_names C --label_column_name L
    python -m train.evaluate runs/nsmc-kcbert/checkpoints/best.ckpt --corpus-dir DIR --out reports/best
    python -m train.evaluate models/nsmc-small --corpus-dir DIR --split test --record   # into MODEL/

MODEL is an exported folder or a Lightning .ckpt. Writes OUT/report.json and OUT/confusion.png. OUT
defaults to the run folder's eval-SPLIT (for runs/x/export or runs/x/checkpoints/*.ckpt), else to
runs/eval/MODEL-SPLIT; only --record writes into MODEL/eval-SPLIT (and MODEL/metrics.json). Prediction
goes through nsmc.inference, the app's own code path, with the fp32 torch runtime unless --runtime says
otherwise: an evaluation reports the model, not a serving shortcut.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from nsmc.cli import command_errors
from nsmc.errors import UserError

BUCKETS = [(0, 10), (10, 20), (20, 40), (40, 80), (80, 10**9)]  # characters; NSMC reviews are < 140


def scores(labels: np.ndarray, preds: np.ndarray, names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1, and the confusion matrix (rows: true)."""
    k = len(names)
    confusion = np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion)
    precision = tp / np.maximum(confusion.sum(0), 1)
    recall = tp / np.maximum(confusion.sum(1), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    per_class = [{"label": n, "precision": float(p), "recall": float(r), "f1": float(f), "n": int(c)}
                 for n, p, r, f, c in zip(names, precision, recall, f1, confusion.sum(1))]
    return {"accuracy": float(tp.sum() / max(len(labels), 1)), "f1": float(f1.mean()), "per_class": per_class,
            "labels": list(names), "confusion": confusion.tolist(), "n": int(len(labels))}


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
    side = 3.0 + 0.6 * len(names)
    fig, ax = plt.subplots(figsize=(side + 0.6, side), dpi=120)
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v:,}\n{v / max(m.sum(), 1):.1%}", ha="center", va="center", fontsize=8,
                color="white" if v > m.max() / 2 else "black")
    ticks = range(len(names))
    slanted = len(names) > 2
    ax.set_xticks(ticks, [f"pred {n}" for n in names], rotation=30 if slanted else 0,
                  ha="right" if slanted else "center")
    ax.set_yticks(ticks, [f"true {n}" for n in names])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def read_split(names: list[str], corpus_dir: str | None, split: str, data_file: str | None,
               text_columns: list[str] | None, label_column: str) -> tuple[list[str], np.ndarray, str, int]:
    """(texts, class indices in the model's order, file, skipped rows) of NSMC's split or a user's file."""
    from nsmc import corpus

    if data_file:
        if not text_columns:
            raise UserError("--test_file needs --text_column_names: the column(s) holding the text.")
        data = corpus.read_labelled(data_file, text_columns, label_column)
        print(data.summary())
        labels = corpus.label_ids(data.labels, names, data_file)
        return data.texts, np.array(labels), data.path, sum(data.skipped.values())
    path = corpus.find_split(corpus_dir, split)
    corpus.check_header(path)
    ratings = corpus.read_ratings(path)
    print(ratings.summary())
    labels = corpus.label_ids([str(label) for label in ratings.labels], names, ratings.path)
    return ratings.documents, np.array(labels), ratings.path, ratings.n_skipped


def default_out(model_path: str, split: str, record: bool) -> Path:
    """Into MODEL only when recording; else beside the run the model came from, or under runs/eval."""
    path = Path(model_path)
    folder = path.parent if path.suffix == ".ckpt" else path
    if record:
        return folder / f"eval-{split}"
    if folder.name in ("export", "checkpoints"):
        return folder.parent / f"eval-{split}"
    return Path("runs") / "eval" / f"{path.stem if path.suffix == '.ckpt' else path.name}-{split}"


def evaluate(model_path: str, corpus_dir: str | None = None, split: str = "test", out: str | None = None,
             base_model: str | None = None, runtime: str = "torch",
             record: bool = False, data_file: str | None = None, text_columns: list[str] | None = None,
             label_column: str = "label") -> dict:
    from nsmc.inference import TextClassifier

    clf = TextClassifier.load(model_path, base_model=base_model, runtime=runtime)
    names = list(clf.label_names)
    texts, labels, file, skipped = read_split(names, corpus_dir, split, data_file, text_columns, label_column)
    start = time.time()
    probs = np.concatenate([clf.predict_proba(texts[i : i + 4096])
                            for i in progress(range(0, len(texts), 4096), len(texts))])
    seconds = time.time() - start
    preds = probs.argmax(1)
    report = {"model": str(model_path), "parameters": sum(p.numel() for p in clf.model.parameters()),
              "runtime": clf.runtime.name, "split": split, "file": file, "skipped_rows": skipped,
              **scores(labels, preds, names), "by_length": by_length(texts, labels, preds),
              "seconds": round(seconds, 1), "reviews_per_second": round(len(labels) / max(seconds, 1e-9), 1)}
    out_dir = Path(out) if out else default_out(model_path, split, record)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    (out_dir / "report.json").write_text(report_text, encoding="utf-8")
    name = Path(model_path).parent.name if Path(model_path).name == "export" else Path(model_path).name
    title = f"{name} on {Path(file).name}: accuracy {report['accuracy']:.2%}"
    plot_confusion(report["confusion"], names, out_dir / "confusion.png", title)
    report["out_dir"] = str(out_dir)
    return report


def progress(chunks, total: int):
    for i in chunks:
        print(f"\r  predicting {min(i + 4096, total):,}/{total:,}", end="", file=sys.stderr, flush=True)
        yield i
    print(file=sys.stderr)


def print_report(r: dict) -> None:
    width = max(8, *(len(n) for n in r["labels"]))
    speed = f"{r['n']:,} texts, {r['reviews_per_second']:,.0f} texts/s"
    print(f"{r['model']} ({r['runtime']}) on {r['split']} ({speed})")
    print(f"  accuracy {r['accuracy']:.4f}   macro-F1 {r['f1']:.4f}")
    print(f"  {'label':<{width}}  precision  recall      F1       n")
    for c in r["per_class"]:
        figures = f"{c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}  {c['n']:6,}"
        print(f"  {c['label']:<{width}}  {figures}")
    print("  confusion (rows: true, columns: predicted)")
    print(f"  {'':<{width}}  " + "  ".join(f"{n[:width]:>{width}}" for n in r["labels"]))
    for name, row in zip(r["labels"], r["confusion"]):
        print(f"  {name:<{width}}  " + "  ".join(f"{v:>{width},}" for v in row))
    lengths = [f"{b['chars']}: {b['accuracy']:.3f} (n={b['n']:,})" for b in r["by_length"]]
    print("  by length (characters): " + ", ".join(lengths))
    print(f"  report: {r['out_dir']}/report.json, confusion matrix: {r['out_dir']}/confusion.png")


def refresh_model_card(model_dir: Path, metrics: dict, n_params: int, labels: list[str]) -> None:
    """Rewrite MODEL/README.md with the new numbers (the card `python -m train.export` wrote)."""
    import yaml

    from train.export import model_card

    settings_file = model_dir / "train_config.yaml"
    settings = yaml.safe_load(settings_file.read_text()) if settings_file.is_file() else {}
    card = model_card(model_dir, settings, metrics, n_params, labels)
    (model_dir / "README.md").write_text(card, encoding="utf-8")


def main(argv=None) -> None:
    from nsmc.runtime import RUNTIMES
    from train.config import names_list

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an exported model folder or a .ckpt")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--corpus-dir", "--corpus_dir", help="NSMC: a folder with ratings_{split}.txt(.gz)")
    data.add_argument("--test-file", "--test_file", help="your own labelled file (.csv, .jsonl, ...)")
    parser.add_argument("--text-column-names", "--text_column_names", nargs="+", help="its text column(s)")
    parser.add_argument("--label-column-name", "--label_column_name", default="label", help="its labels")
    parser.add_argument("--split", default="test", choices=["train", "test"], help="NSMC's split to score")
    parser.add_argument("--out", "--output", help="where report.json and confusion.png go (see above)")
    parser.add_argument("--runtime", default="torch", choices=RUNTIMES, help="backend (torch: fp32)")
    parser.add_argument("--base-model", help="for a .ckpt that carries no tokenizer")
    parser.add_argument("--record", action="store_true",
                        help="write into MODEL: eval-SPLIT/, accuracy and macro-F1 in metrics.json, its card")
    args = parser.parse_args(argv)
    with command_errors():
        report = evaluate(args.model, args.corpus_dir, args.split, args.out, args.base_model,
                          runtime=args.runtime, record=args.record, data_file=args.test_file,
                          text_columns=names_list(args.text_column_names),
                          label_column=args.label_column_name)
    print_report(report)
    if args.record and Path(args.model).is_dir():
        path = Path(args.model) / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        metrics.update({f"{args.split}_acc": round(report["accuracy"], 5),
                        f"{args.split}_f1": round(report["f1"], 5),
                        f"{args.split}_n": report["n"]})
        path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
        refresh_model_card(Path(args.model), metrics, report["parameters"], report["labels"])
        print(f"  recorded in {path} and the model card")


if __name__ == "__main__":
    main()
