"""train.pseudo_label: the teacher's files keep validation apart and label every unlabeled review."""

import json

from nsmc.corpus import read_lines, read_ratings
from train.data import split_train_val
from train.pseudo_label import main


def test_teacher_labels_unlabeled_reviews_and_keeps_validation_apart(tmp_path, fixtures_dir, tiny_model_dir):
    main(["--model", str(tiny_model_dir), "--corpus-dir", str(fixtures_dir), "--runtime", "torch",
          "--unlabeled", str(fixtures_dir / "reviews_unlabeled.txt"), "--out", str(tmp_path),
          "--val-size", "50"])
    source = read_ratings(fixtures_dir / "ratings_train.txt")
    unlabeled = read_lines(fixtures_dir / "reviews_unlabeled.txt")
    train_idx, val_idx = split_train_val(len(source), 50, 7)

    validation = read_ratings(tmp_path / "ratings_validation.txt")
    assert validation.documents == [source.documents[i] for i in val_idx]  # the split training carves
    assert validation.labels == [source.labels[i] for i in val_idx]  # true labels, not the teacher's
    train = read_ratings(tmp_path / "ratings_train.txt")
    assert train.n_skipped == 0 and len(train) == len(train_idx) + len(unlabeled)
    assert train.labels[:len(train_idx)] == [source.labels[i] for i in train_idx]
    assert train.documents[len(train_idx):] == unlabeled
    assert not set(validation.documents) & set(train.documents[:len(train_idx)])
    report = json.loads((tmp_path / "teacher.json").read_text())
    assert report["validation_n"] == 50 and report["unlabeled_n"] == len(unlabeled)
    assert 0 <= report["teacher_acc"] <= 1
