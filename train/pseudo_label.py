"""Label unlabeled reviews with a teacher, to train a student on many more reviews than NSMC's train split.

Usage:
    python -m train.pseudo_label --model models/nsmc-small --corpus-dir ../shared/data/nsmc \\
        --unlabeled ../shared/data/nsmc/reviews_unlabeled.txt.gz --out runs/pseudo

The teacher averages the fine-tuned model with a character n-gram TF-IDF logistic regression fitted on the
train split; the two err differently, so their average beats either. Validation is the seeded split of the
train file that training carves (`--val_size`, `--seed`), written apart and never labelled by the teacher, so
a student trained on OUT/ratings_train.txt is chosen on reviews neither it nor its teacher saw. Writes
OUT/ratings_train.txt (labelled train minus validation, then every unlabeled review with the teacher's label),
OUT/ratings_validation.txt and OUT/teacher.json (the teacher's validation accuracy, next to its parts').
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from nsmc import corpus
from nsmc.cli import command_errors
from nsmc.inference import TextClassifier
from nsmc.runtime import DEFAULT_RUNTIME, RUNTIMES
from train.data import split_train_val


def ngram_model(texts: list[str], labels: np.ndarray, c: float):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), min_df=2, sublinear_tf=True,
                                 max_features=500_000)
    return make_pipeline(vectorizer, LogisticRegression(C=c, max_iter=1000)).fit(texts, labels)


def write_ratings(path: Path, documents: list[str], labels: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(corpus.HEADER)
        writer.writerows((i, d, int(y)) for i, (d, y) in enumerate(zip(documents, labels)))
    tmp.replace(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="the fine-tuned teacher: an exported folder or a .ckpt")
    parser.add_argument("--corpus-dir", "--corpus_dir", required=True,
                        help="folder with ratings_train.txt(.gz)")
    parser.add_argument("--unlabeled", required=True, help="one review a line, plain or .gz")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME, help="the teacher's runtime")
    parser.add_argument("--weight", type=float, default=0.5, help="the n-gram model's share of the average")
    parser.add_argument("--c", type=float, default=8.0,
                        help="inverse regularisation of the logistic regression")
    parser.add_argument("--val-size", "--val_size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with command_errors() as outputs:
        outputs.watch(args.out)
        label(args)


def label(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    ratings = corpus.read_ratings(corpus.find_split(args.corpus_dir, "train"))
    documents, labels = np.array(ratings.documents, dtype=object), np.array(ratings.labels)
    train_idx, val_idx = split_train_val(len(ratings), args.val_size, args.seed)
    unlabeled = corpus.read_lines(args.unlabeled)
    print(f"{len(train_idx):,} labelled, {len(val_idx):,} validation, {len(unlabeled):,} unlabeled reviews")

    print(f"fitting the n-gram model (C={args.c}) on {len(train_idx):,} reviews ...", flush=True)
    ngrams = ngram_model(list(documents[train_idx]), labels[train_idx], args.c)
    model = TextClassifier.load(args.model, runtime=args.runtime)
    positive = model.label_names.index("positive")

    def teacher(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        neural = model.predict_proba(texts)[:, positive]
        return neural, args.weight * ngrams.predict_proba(texts)[:, 1] + (1 - args.weight) * neural

    val_neural, val_teacher = teacher(list(documents[val_idx]))
    val_labels = labels[val_idx]
    report = {"validation_n": len(val_idx), "teacher_acc": float(((val_teacher > 0.5) == val_labels).mean()),
              "neural_acc": float(((val_neural > 0.5) == val_labels).mean()),
              "ngram_acc": float((ngrams.predict(list(documents[val_idx])) == val_labels).mean()),
              "weight": args.weight, "c": args.c, "runtime": args.runtime, "model": str(args.model)}
    print(f"validation accuracy: teacher {report['teacher_acc']:.2%}, model {report['neural_acc']:.2%}, "
          f"n-grams {report['ngram_acc']:.2%}", flush=True)

    print(f"labelling {len(unlabeled):,} reviews ...", flush=True)
    pseudo = np.concatenate([teacher(unlabeled[i:i + 20_000])[1] > 0.5
                             for i in range(0, len(unlabeled), 20_000)])
    report.update(unlabeled_n=len(unlabeled), unlabeled_positive=float(pseudo.mean()),
                  seconds=round(time.time() - started))
    write_ratings(out / "ratings_train.txt", list(documents[train_idx]) + unlabeled,
                  np.concatenate([labels[train_idx], pseudo.astype(int)]))
    write_ratings(out / "ratings_validation.txt", list(documents[val_idx]), val_labels)
    (out / "teacher.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}/ratings_train.txt, ratings_validation.txt, teacher.json in {report['seconds']} s")


if __name__ == "__main__":
    main()
