"""train/trainer.py and how `python -m train` drives it: checkpoints load as plain weights only (no pickle,
even for --resume of a run folder someone sent), a run on several devices (DDP, 2 CPU processes
over gloo) scores every test review exactly once, and --ema_decay exports the weights' average."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, make_tiny_model

# TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns torch.load's safe default off wherever a caller left weights_only
# unset (torch then warns); warnings on, so that warning and Lightning's "not set" notice would show.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "default",
       "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1"}
UNSAFE_LOADS = ("`weights_only` was not set", "forcing weights_only=False")


def train(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "train", "configs/smoke.yaml", *map(str, args)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=300)


def ok(proc) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, tiny_tokenizer):
    return make_tiny_model(tmp_path_factory.mktemp("base"), tiny_tokenizer)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, fixtures_dir):
    """An odd number of test reviews (121), so two devices cannot split them evenly."""
    d = tmp_path_factory.mktemp("corpus")
    shutil.copy(fixtures_dir / "ratings_train.txt", d)
    test = (fixtures_dir / "ratings_test.txt").read_text(encoding="utf-8")
    (d / "ratings_test.txt").write_text(test + "999\t한 번 더 보고 싶은 영화\t1\n", encoding="utf-8")
    return d


def test_checkpoints_load_weights_only_in_fit_validate_test_and_resume(base_model, corpus, tmp_path):
    out = tmp_path / "run"
    args = ["--pretrained_model_name", base_model, "--corpus_dir", corpus, "--downstream_model_dir", out,
            "--cache_dir", tmp_path / "cache", "--max_steps", "4"]
    log = ok(train(*args))  # saves best/last, then validates and tests from best.ckpt
    log += ok(train(*args[:-1], "8", "--resume"))  # fit from last.ckpt
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    for unsafe in UNSAFE_LOADS:
        assert unsafe not in log


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_resume_refuses_a_pickle_bearing_checkpoint(base_model, corpus, tmp_path):
    out, marker = tmp_path / "sent-to-you", tmp_path / "code-ran"
    (out / "checkpoints").mkdir(parents=True)
    evil = {"state_dict": {"model.w": torch.zeros(2)}, "callbacks": Exploit(marker)}
    torch.save(evil, out / "checkpoints" / "last.ckpt")
    proc = train("--pretrained_model_name", base_model, "--corpus_dir", corpus, "--downstream_model_dir", out,
                 "--cache_dir", tmp_path / "cache", "--resume")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Refused to load" in proc.stderr and "--resume" in proc.stderr
    assert not marker.exists()


def test_ddp_on_two_processes_scores_each_test_review_once(base_model, corpus, tmp_path):
    """Lightning's default DistributedSampler would pad 121 test reviews to 122 (61 a process), and the
    61 validation reviews, which choose the checkpoint, to 62."""
    out = tmp_path / "ddp"
    log = ok(train("--pretrained_model_name", base_model, "--corpus_dir", corpus,
                   "--downstream_model_dir", out, "--cache_dir", tmp_path / "cache",
                   "--devices", "2", "--strategy", "ddp", "--max_steps", "3", "--val_size", "61"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_n"] == 121 and metrics["val_n"] == 61
    assert f"test accuracy {metrics['test_acc']:.4f} on 121 reviews" in log
    correct = metrics["test_acc"] * 121
    assert correct == pytest.approx(round(correct), abs=1e-3)  # k/121, not k/122
    assert (out / "export" / "model.safetensors").is_file()


def test_ema_validates_and_exports_the_average_and_resumes(base_model, corpus, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    args = ["--pretrained_model_name", base_model, "--corpus_dir", corpus, "--downstream_model_dir", out,
            "--cache_dir", tmp_path / "cache", "--ema_decay", "0.5", "--learning_rate", "1e-2",
            "--val_check_interval", "4", "--max_steps"]
    log = ok(train(*args, "4")) + ok(train(*args, "8", "--resume"))
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 8
    name = "model.classifier.weight"
    # Lightning's EMAWeightAveraging keeps the average in state_dict and the trained weights beside it.
    assert not torch.equal(last["state_dict"][name], last["current_model_state"][name])
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"][name]
    exported = load_file(out / "export" / "model.safetensors")["classifier.weight"]
    assert torch.allclose(exported.float(), best.float(), atol=1e-3)
    for unsafe in UNSAFE_LOADS:
        assert unsafe not in log
