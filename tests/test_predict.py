"""nsmc.predict: formats, several text columns, resume without scoring a row twice, bad rows, messages."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nsmc import predict
from nsmc.cli import EXIT_USER_ERROR
from nsmc.corpus import read_ratings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    from nsmc.inference import TextClassifier

    return TextClassifier.load(tiny_model_dir, runtime="torch")


@pytest.fixture(scope="module")
def reviews(fixtures_dir) -> list[str]:
    return read_ratings(fixtures_dir / "ratings_test.txt").documents[:60]


def run(model, *args) -> int | None:
    """The command, in-process: its exit code."""
    try:
        predict.main(["--model", str(model), "--runtime", "torch", *map(str, args)])
    except SystemExit as e:
        return e.code
    return 0


def read_output(path: Path) -> pd.DataFrame:
    if ".jsonl" in path.name:
        return pd.read_json(path, lines=True, dtype=False, compression="infer")
    return pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")


def write(path: Path, text: str) -> Path:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def as_csv(rows: list[dict]) -> str:
    return pd.DataFrame(rows).to_csv(index=False)


@pytest.mark.parametrize("source, target", [("in.csv", "out.jsonl"), ("in.tsv.gz", "out.csv"),
                                            ("in.jsonl", "out.csv.gz"), ("in.txt", "out.jsonl.gz")])
def test_formats_keep_the_columns_and_add_one_score_per_label(tmp_path, tiny_model_dir, classifier, reviews,
                                                               source, target):
    rows = [{"id": str(i), "document": r} for i, r in enumerate(reviews)]
    src = tmp_path / source
    if ".jsonl" in source:
        write(src, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    elif ".tsv" in source:
        write(src, pd.DataFrame(rows).to_csv(index=False, sep="\t"))
    elif ".txt" in source:
        write(src, "".join(r + "\n" for r in reviews))
        rows = [{"document": r} for r in reviews]
    else:
        write(src, as_csv(rows))
    assert run(tiny_model_dir, src, tmp_path / target) == 0
    out = read_output(tmp_path / target)
    names = classifier.label_names
    assert list(out.columns) == [*rows[0], *names, "label", "truncated"]
    assert out["document"].tolist() == reviews
    if "id" in out:
        assert out["id"].astype(str).tolist() == [r["id"] for r in rows]
    probs = out[names].astype(float).to_numpy()
    assert np.allclose(probs, classifier.predict_proba(reviews), atol=2e-6)
    assert out["label"].tolist() == [names[i] for i in probs.argmax(1)]
    assert not (tmp_path / f"{target}.progress.json").exists()


def test_nsmc_ratings_file_is_read_as_a_table_and_its_label_kept(tmp_path, tiny_model_dir, fixtures_dir):
    out = tmp_path / "out.csv"
    assert run(tiny_model_dir, fixtures_dir / "ratings_test.txt", out) == 0
    table = read_output(out)
    ratings = read_ratings(fixtures_dir / "ratings_test.txt")
    assert list(table.columns) == ["id", "document", "label", "negative", "positive", "predicted_label",
                                   "truncated"]
    assert table["label"].tolist() == [str(x) for x in ratings.labels]  # the input's own column, untouched
    assert set(table["predicted_label"]) <= {"negative", "positive"}


def test_several_text_columns_are_joined_with_a_space(tmp_path, tiny_model_dir, classifier, reviews):
    rows = [{"title": a, "body": b} for a, b in zip(reviews[:20], reviews[20:40])]
    src = write(tmp_path / "in.csv", as_csv(rows))
    assert run(tiny_model_dir, src, tmp_path / "out.csv", "--text_column_names", "title,body") == 0
    probs = read_output(tmp_path / "out.csv")[classifier.label_names].astype(float).to_numpy()
    joined = [f"{a} {b}" for a, b in zip(reviews[:20], reviews[20:40])]
    assert np.allclose(probs, classifier.predict_proba(joined), atol=2e-6)
    assert not np.allclose(probs, classifier.predict_proba(reviews[:20]), atol=2e-6)


def test_resume_after_an_interruption_scores_no_row_twice(tmp_path, tiny_model_dir, reviews, monkeypatch,
                                                           capsys):
    src = write(tmp_path / "in.csv", as_csv([{"id": str(i), "document": r} for i, r in enumerate(reviews)]))
    reference = tmp_path / "reference.csv"
    assert run(tiny_model_dir, src, reference, "--chunk_rows", "7") == 0

    scored: list[str] = []
    real_score = predict.score

    def counting_score(classifier, texts, progress=None):
        if len(scored) >= 21:  # the fourth chunk: as if Ctrl-C arrived while it was being scored
            raise KeyboardInterrupt
        scored.extend(texts)
        return real_score(classifier, texts, progress)

    monkeypatch.setattr(predict, "score", counting_score)
    out = tmp_path / "out.csv"
    code = run(tiny_model_dir, src, out, "--chunk_rows", "7")
    assert code == 130
    message = capsys.readouterr().err
    assert "Interrupted: 21 rows" in message and "--resume" in message and "--chunk_rows 7" in message
    assert read_output(out)["id"].tolist() == [str(i) for i in range(21)]  # a valid file up to there
    # A kill in the middle of writing the next chunk leaves part of it past the recorded length.
    with open(out, "ab") as f:
        f.write(b'21,"half a chunk' + b"." * 100_000)
    def score_once(classifier, texts, progress=None):
        scored.extend(texts)
        return real_score(classifier, texts, progress)

    monkeypatch.setattr(predict, "score", score_once)
    assert run(tiny_model_dir, src, out, "--resume", "--chunk_rows", "7") == 0
    assert sorted(scored) == sorted(reviews) and len(scored) == len(reviews)  # each row scored exactly once
    assert out.read_bytes() == reference.read_bytes()
    assert f"Wrote {len(reviews)} rows" in capsys.readouterr().out


def test_resume_refuses_another_job(tmp_path, capsys, tiny_model_dir, reviews, monkeypatch):
    src = write(tmp_path / "in.csv", as_csv([{"document": r} for r in reviews]))
    out = tmp_path / "out.csv"
    monkeypatch.setattr(predict, "score", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert run(tiny_model_dir, src, out) == 130
    before = out.read_bytes()
    capsys.readouterr()
    assert run(tiny_model_dir, src, out, "--resume", "--runtime", "onnx") == EXIT_USER_ERROR
    assert "out.csv was begun with another runtime (runtime torch)" in capsys.readouterr().err
    write(src, as_csv([{"document": r} for r in reviews[:5]]))  # the input changed
    assert run(tiny_model_dir, src, out, "--resume") == EXIT_USER_ERROR
    assert "was begun with another input_size" in capsys.readouterr().err
    assert out.read_bytes() == before


# `python -m nsmc.predict` whose third chunk waits on stdin: however slow the test is to send Ctrl-C, the
# run cannot finish first, and the signal lands mid-run as a user's would. Ctrl-C as in a terminal, even
# where the tests run as a background job (which starts children with SIGINT ignored).
PAUSED_AT_THIRD_CHUNK = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from nsmc import predict
real_score, calls = predict.score, []
def score(*args):
    calls.append(1)
    if len(calls) == 3:
        sys.stdin.read()
    return real_score(*args)
predict.score = score
predict.main(sys.argv[1:])
"""


def test_ctrl_c_leaves_a_valid_partial_output_and_says_how_to_resume(tmp_path, tiny_model_dir, reviews):
    """The real signal, in a child process: stopped after its first chunks, resumed to the end."""
    rows = [{"id": str(i), "document": reviews[i % len(reviews)]} for i in range(600)]
    src = write(tmp_path / "in.csv", as_csv(rows))
    out = tmp_path / "out.csv"
    sidecar = predict.progress_path(out)
    args = ["--model", str(tiny_model_dir), "--runtime", "torch", "--chunk_rows", "20", str(src), str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", PAUSED_AT_THIRD_CHUNK, *args], cwd=ROOT, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        if sidecar.is_file() and json.loads(sidecar.read_text())["chunks"] >= 2:
            break
        time.sleep(0.05)  # polling for the child's progress, not ordering threads
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    done = json.loads(sidecar.read_text())["counts"]["rows"]
    assert done == 40  # the two chunks before the pause, and nothing half-written
    assert f"Interrupted: {done:,} rows" in err and "--resume" in err
    partial = read_output(out)
    assert partial["id"].tolist() == [str(i) for i in range(done)]
    assert run(tiny_model_dir, src, out, "--chunk_rows", "20", "--resume") == 0
    assert read_output(out)["id"].tolist() == [r["id"] for r in rows]


def test_bad_rows_are_counted_never_fatal(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "in.csv"
    src.write_bytes(
        b'id,document\n'
        b'1,good movie\n'
        b'2,"broken quote\n'          # swallows lines up to the next quote, then fails: one bad record
        b'3,lost\n'
        b'4,"x" y\n'
        b'5,too,many,fields\n'
        b'6,\n'                       # empty text: scored blank
        b'\n'                         # empty line
        b'7,bad \xff\xfe bytes\n'     # invalid UTF-8: read as U+FFFD and scored
        b'8,"a ""quoted"" word"\n'
    )
    assert run(tiny_model_dir, src, tmp_path / "out.csv") == 0
    out = read_output(tmp_path / "out.csv")
    assert out["id"].tolist() == ["1", "6", "7", "8"]
    assert out["document"].tolist() == ["good movie", "", "bad \ufffd\ufffd bytes", 'a "quoted" word']
    assert out.loc[1, "negative"] == "" and out.loc[1, "label"] == ""  # blank: no made-up score
    assert all(out.loc[i, "label"] in ("negative", "positive") for i in (0, 2, 3))
    report = capsys.readouterr().out
    assert "Wrote 4 rows" in report
    assert "blank text (empty scores): 1" in report
    assert "invalid UTF-8 (bytes read as \ufffd, scored): 1" in report
    assert "skipped: 3 (1 broken quoting, 1 4 fields instead of 2, 1 empty line" in report
    assert "lines 3-5: broken quoting" in report


def test_bad_jsonl_lines_are_counted_never_fatal(tmp_path, tiny_model_dir, capsys):
    src = write(tmp_path / "in.jsonl", '{"document": "좋아요", "n": 1}\n{"document": \n[1, 2]\n\n'
                                      '{"n": 3}\n{"document": null}\n' + "[" * 100_000 + "\n")
    assert run(tiny_model_dir, src, tmp_path / "out.jsonl") == 0
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["n"] for r in out] == [1, 3, None]  # the first object's keys: absent ones are null
    assert [r["label"] for r in out] == [out[0]["label"], "", ""]  # a missing or null text is blank
    assert out[1]["negative"] is None and out[0]["negative"] > 0
    report = capsys.readouterr().out
    assert "skipped: 4 (2 not valid JSON, 1 not a JSON object, 1 empty line" in report


ONE = "document\n좋다\n"


@pytest.mark.parametrize("source, content, target, old, args, message", [
    ("in.csv", "id,review,stars\n1,좋다,5\n", "out.csv", None, [],
     "in.csv has no column 'document' (columns found: 'id', 'review', 'stars')"),
    ("in.jsonl", '{"review": "좋다"}\n', "out.csv", None, ["--text_column_names", "text"],
     "in.jsonl has no key 'text' (keys found: 'review')"),
    ("in.xlsx", "x", "out.csv", None, [],
     "unknown input format '.xlsx'; name it .csv, .tsv, .txt (tab-separated) or .jsonl"),
    ("in.csv", ONE, "out.parquet", None, [], "unknown output format '.parquet'; name it .csv or .jsonl"),
    ("missing.csv", None, "out.csv", None, [], "missing.csv: no such file"),
    ("in.csv", "", "out.csv", None, [], "in.csv is empty"),
    ("in.csv", "document,document\n좋다,좋다\n", "out.csv", None, [],
     "has the column 'document' more than once"),
    ("in.csv", ONE, "out.csv", "old", [],
     "out.csv exists. Add --resume to continue an interrupted run, or --overwrite to replace it."),
    ("in.csv", ONE, "out.csv", "old", ["--resume"], "out.csv exists but has no progress file"),
])
def test_mistakes_get_one_line_and_no_traceback(tmp_path, capsys, tiny_model_dir, source, content, target,
                                                old, args, message):
    if content is not None:
        write(tmp_path / source, content)
    if old is not None:
        write(tmp_path / target, old)
    code = run(tiny_model_dir, tmp_path / source, tmp_path / target, *args)
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and err.startswith("nsmc.predict: ") and message in err, (code, err)
    if old is None:  # nothing half-made
        assert not (tmp_path / target).exists() and not predict.progress_path(tmp_path / target).exists()
    else:
        assert (tmp_path / target).read_text() == old


def test_overwrite_replaces_an_existing_output(tmp_path, tiny_model_dir):
    src = write(tmp_path / "in.csv", "document\n좋다\n별로\n")
    out = write(tmp_path / "out.csv", "old\n" * 1000)
    assert run(tiny_model_dir, src, out, "--overwrite") == 0
    assert read_output(out)["document"].tolist() == ["좋다", "별로"]
