"""End to end on CPU: the real commands (`python -m train`, `.export`, `.evaluate`, `.pretrain`) on
tiny models built here, as a user would run them. Also the kcbert-base architecture, a few steps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, make_tiny_model

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def cli(*args, check=True, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def cli_at_once(*commands, timeout=300) -> list[subprocess.CompletedProcess]:
    """Several commands side by side (each spends seconds importing torch), unchecked, in order."""
    procs = [subprocess.Popen([sys.executable, "-m", *map(str, args)], cwd=ROOT, env=ENV, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args in commands]
    outs = [p.communicate(timeout=timeout) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


def assert_clean_error(proc, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, fixtures_dir):
    """The fixture corpus plus one malformed row, which must be counted and skipped."""
    d = tmp_path_factory.mktemp("corpus")
    shutil.copy(fixtures_dir / "ratings_test.txt", d)
    text = (fixtures_dir / "ratings_train.txt").read_text(encoding="utf-8")
    (d / "ratings_train.txt").write_text(text + "999\tbroken row without a label\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_tokenizer, corpus):
    base = make_tiny_model(tmp_path_factory.mktemp("base"), tiny_tokenizer)
    out = tmp_path_factory.mktemp("run")
    args = ["train", "configs/smoke.yaml", "--pretrained_model_name", base, "--corpus_dir", corpus,
            "--downstream_model_dir", out, "--cache_dir", out / "cache"]
    proc = cli(*args)
    return {"out": out, "args": args, "proc": proc, "base": base}


def test_training_writes_checkpoints_logs_and_export(run):
    out = run["out"]
    assert "skipped 1 malformed rows" in run["proc"].stdout + run["proc"].stderr
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "logs" / "version_0" / "metrics.csv").is_file()
    export = out / "export"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "train_config.yaml", "metrics.json",
                 "README.md"):
        assert (export / name).is_file(), name
    config = json.loads((export / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    metrics = json.loads((export / "metrics.json").read_text())
    assert {"val_acc", "val_f1", "test_acc", "test_f1"} <= metrics.keys()
    assert 0.0 <= metrics["test_acc"] <= 1.0


def test_export_loads_with_transformers_pipeline(run):
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(run["out"] / "export"))
    result = clf(["정말 재밌어요", "시간 아까움"])
    assert {r["label"] for r in result} <= {"negative", "positive"}


def test_resume_continues_to_the_same_end(run):
    import torch

    last = run["out"] / "checkpoints" / "last.ckpt"
    before = torch.load(last, weights_only=True, map_location="cpu")
    cli(*run["args"], "--resume", "true", "--epochs", "3")
    after = torch.load(last, weights_only=True, map_location="cpu")
    assert after["epoch"] == before["epoch"] + 1
    steps_per_epoch = before["global_step"] // (before["epoch"] + 1)
    assert after["global_step"] == before["global_step"] + steps_per_epoch  # one more epoch, not a restart


def test_export_command_and_evaluate_command(run, corpus, tmp_path):
    import torch
    from safetensors import safe_open

    cli("train.export", run["out"] / "checkpoints" / "best.ckpt", tmp_path / "half", "--dtype", "float16")
    config = json.loads((tmp_path / "half" / "config.json").read_text())
    assert config["id2label"]["1"] == "positive" and config["dtype"] == "float32"  # loads as float32
    with safe_open(tmp_path / "half" / "model.safetensors", "pt") as weights:
        assert weights.get_tensor(next(iter(weights.keys()))).dtype == torch.float16  # stored as float16
    proc = cli("train.evaluate", tmp_path / "half", "--corpus-dir", corpus, "--split", "test",
               "--out", tmp_path / "eval")
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["n"] == 120 and 0 <= report["accuracy"] <= 1 and sum(map(sum, report["confusion"])) == 120
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000
    assert "accuracy" in proc.stdout and report["by_length"]
    # A checkpoint evaluates too (config and tokenizer travel inside it).
    cli("train.evaluate", run["out"] / "checkpoints" / "best.ckpt", "--corpus-dir", corpus,
        "--out", tmp_path / "eval2")


def test_corrupt_and_missing_checkpoints_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"this is not a checkpoint")
    assert_clean_error(cli("train.export", bad, tmp_path / "x", check=False), "not a readable checkpoint")
    assert_clean_error(cli("train.export", tmp_path / "nope.ckpt", tmp_path / "x", check=False),
                       "Checkpoint not found")


def test_user_errors_are_one_clear_message(run, tmp_path):
    args = ["train", "configs/smoke.yaml", "--pretrained_model_name", run["base"]]
    no_corpus, offline, devices, resume = cli_at_once(
        [*args, "--corpus_dir", tmp_path / "nothing", "--downstream_model_dir", tmp_path / "o1"],
        ["train", "configs/smoke.yaml", "--pretrained_model_name", "beomi/kcbert-base",
         "--corpus_dir", tmp_path, "--downstream_model_dir", tmp_path / "o2"],
        [*args, "--devices", "lots", "--downstream_model_dir", tmp_path / "o3"],
        [*args, "--resume", "true", "--downstream_model_dir", tmp_path / "o4"])
    assert_clean_error(no_corpus, "No NSMC train file")
    assert_clean_error(offline, "Could not load", "local")
    assert_clean_error(devices, "--devices")
    assert_clean_error(resume, "no ", "last.ckpt")


@pytest.mark.parametrize("objective", ["mlm", "electra"])
def test_pretrain_then_finetune(tmp_path, corpus, fixtures_dir, objective):
    pre = tmp_path / "pre"
    cli("train.pretrain", "configs/pretrain-smoke.yaml", "--output_dir", pre, "--objective", objective,
        "--generator_hidden_size", "16", "--cache_dir", tmp_path / "cache",
        "--texts", fixtures_dir / "reviews_unlabeled.txt", "--epochs", "1")
    assert (pre / "export" / "config.json").is_file() and (pre / "tokenizer" / "tokenizer.json").is_file()
    metrics = json.loads((pre / "export" / "metrics.json").read_text())
    architecture = json.loads((pre / "export" / "config.json").read_text())["architectures"]
    if objective == "mlm":  # below a uniform guess over the 1,500 tokens (ln 1500 = 7.3, plus a margin)
        assert metrics["val_loss"] < 7.6 and architecture == ["BertForMaskedLM"]
    else:  # ELECTRA's model alone: the generator and the detector's head stay behind
        assert architecture == ["BertModel"]
    cli("train", "configs/smoke.yaml", "--pretrained_model_name", pre / "export", "--corpus_dir", corpus,
        "--downstream_model_dir", tmp_path / "ft", "--cache_dir", tmp_path / "cache", "--epochs", "1")
    assert (tmp_path / "ft" / "export" / "model.safetensors").is_file()


SHARED_KCBERT = ROOT.parent / "shared" / "kcbert-base"


@pytest.mark.skipif(not (SHARED_KCBERT / "vocab.txt").is_file(),
                    reason="../shared/kcbert-base (kcbert's config and vocab) not present")
def test_kcbert_base_architecture_trains_a_few_steps(tmp_path, corpus):
    """The full-size path: kcbert-base's own config.json and vocab.txt, random weights (the real ones are
    unreachable here), so tokenization, lengths and speed are kcbert's."""
    out = tmp_path / "run"
    cli("train", "configs/smoke.yaml", "--pretrained_model_name", SHARED_KCBERT, "--from_scratch", "true",
        "--corpus_dir", corpus, "--downstream_model_dir", out, "--cache_dir", tmp_path / "cache",
        "--max_steps", "2", "--batch_size", "8", "--max_seq_length", "128", "--run_test", "false",
        "--export_dtype", "float16", timeout=600)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and 0 <= metrics["val_acc"] <= 1
    config = json.loads((out / "export" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["vocab_size"]) == (12, 30000)
    print(f"kcbert-base architecture on CPU: {metrics['fit_seconds'] / 2:.1f} s per step of 8 reviews "
          "(incl. start-up)")


# --- your own data: a three-label Korean dataset with its own column names ----------------------------

TOPIC_NAMES = ["food", "sports", "travel"]


@pytest.fixture(scope="module")
def topics_run(tmp_path_factory, fixtures_dir):
    """`python -m train` on tests/fixtures/topics_* (TSV train, JSONL test), from the kcbert-tiny fixture."""
    out = tmp_path_factory.mktemp("topics")
    proc = cli("train", "configs/smoke.yaml", "--pretrained-model-name", fixtures_dir / "kcbert-tiny",
               "--from-scratch", "true", "--train-file", fixtures_dir / "topics_train.tsv",
               "--test-file", fixtures_dir / "topics_test.jsonl",
               "--text-column-names", "text", "--label-column-name", "topic", "--monitor", "val_f1",
               "--downstream-model-dir", out, "--cache-dir", out / "cache")
    return {"out": out, "proc": proc}


def test_own_data_trains_and_exports_three_labels(topics_run):
    out, log = topics_run["out"], topics_run["proc"].stdout + topics_run["proc"].stderr
    assert "initialised afresh" in log
    assert "topics_train.tsv: 300 rows" in log and "topics_test.jsonl: 60 rows" in log
    export = out / "export"
    assert json.loads((export / "config.json").read_text())["id2label"] == dict(zip("012", TOPIC_NAMES))
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"val_acc", "val_f1", "test_acc", "test_f1"} <= metrics.keys()
    assert metrics["data"]["test"] == {"file": "topics_test.jsonl", "rows": 60}
    examples = json.loads((export / "examples.json").read_text(encoding="utf-8"))
    assert isinstance(examples, list) and 3 <= len(examples) <= 6
    assert all(isinstance(t, str) for t in examples)
    card = (export / "README.md").read_text(encoding="utf-8")
    assert "`food`, `sports`, `travel`" in card and "| test | `topics_test.jsonl` | 60 |" in card
    assert "NSMC" not in card
    from transformers import pipeline

    results = pipeline("text-classification", model=str(export), top_k=None)(["김치찌개 국물이 진하다"])[0]
    assert sorted(r["label"] for r in results) == TOPIC_NAMES


def test_evaluate_own_data_prints_per_class_figures(topics_run, fixtures_dir, tmp_path):
    proc = cli("train.evaluate", topics_run["out"] / "export",
               "--test_file", fixtures_dir / "topics_test.jsonl",
               "--text_column_names", "text", "--label_column_name", "topic")
    eval_dir = topics_run["out"] / "eval-test"  # beside the run, not inside the exported model
    report = json.loads((eval_dir / "report.json").read_text())
    assert report["runtime"] == "torch" and report["n"] == 60 and report["labels"] == TOPIC_NAMES
    assert len(report["confusion"]) == 3 and sum(map(sum, report["confusion"])) == 60
    assert [c["label"] for c in report["per_class"]] == TOPIC_NAMES
    assert sum(c["n"] for c in report["per_class"]) == 60
    for name in TOPIC_NAMES:
        assert any(line.split()[:1] == [name] and len(line.split()) == 5
                   for line in proc.stdout.splitlines()), proc.stdout
    assert "macro-F1" in proc.stdout and (eval_dir / "confusion.png").stat().st_size > 1000
    assert not (topics_run["out"] / "export" / "eval-test").exists()


def test_own_data_mistakes_are_one_clear_message(fixtures_dir, tmp_path):
    args = ["train", "configs/smoke.yaml", "--pretrained_model_name", fixtures_dir / "kcbert-tiny",
            "--from_scratch", "true"]
    # Issue 11: a comma-separated NSMC corpus names what was expected and what was found.
    (tmp_path / "nsmc").mkdir()
    (tmp_path / "nsmc" / "ratings_train.txt").write_text("id,document,label\n1,좋다,1\n", encoding="utf-8")
    missing_column, comma_separated = cli_at_once(
        [*args, "--train_file", fixtures_dir / "topics_train.tsv", "--text_column_names", "review",
         "--downstream_model_dir", tmp_path / "o1", "--cache_dir", tmp_path / "cache1"],
        [*args, "--corpus_dir", tmp_path / "nsmc", "--downstream_model_dir", tmp_path / "o2",
         "--cache_dir", tmp_path / "cache2"])
    assert_clean_error(missing_column, "no column 'review', 'label'", "'id', 'text', 'topic'")
    assert_clean_error(comma_separated, "expected NSMC's tab-separated columns id, document, label",
                       "'id,document,label'")
