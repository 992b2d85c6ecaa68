from pathlib import Path

import numpy as np

from train.evaluate import default_out, scores


def test_scores_for_three_classes():
    labels, preds = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
    r = scores(labels, preds, ["a", "b", "c"])
    assert r["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert r["accuracy"] == 4 / 6 and r["n"] == 6
    a, b, c = r["per_class"]
    assert (a["precision"], a["recall"], b["precision"], b["recall"], c["precision"], c["recall"]) == (
        0.5, 0.5, 2 / 3, 1.0, 1.0, 0.5)
    assert abs(r["f1"] - np.mean([a["f1"], b["f1"], c["f1"]])) < 1e-12 and abs(b["f1"] - 0.8) < 1e-12


def test_evaluation_writes_into_the_model_only_with_record():
    assert default_out("models/nsmc-small", "test", record=False) == Path("runs/eval/nsmc-small-test")
    assert default_out("models/nsmc-small", "test", record=True) == Path("models/nsmc-small/eval-test")
    assert default_out("runs/x/export", "test", record=False) == Path("runs/x/eval-test")
    assert default_out("runs/x/checkpoints/best.ckpt", "test", record=False) == Path("runs/x/eval-test")
