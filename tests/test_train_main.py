"""`python -m train` (train/__main__.py): settings the base model cannot take are fitted to it before
training, and the closing line says what was done."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from conftest import ROOT, make_tiny_model

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def test_long_max_seq_length_is_cut_to_the_model_and_run_test_false_says_what_was_done(
        tmp_path, tiny_tokenizer, fixtures_dir):
    """A model with 32 position embeddings, reviews up to 113 tokens, --max_seq_length 200: transformers
    used to fail a few steps in. And with --run_test false the last line used to be `test accuracy nan`."""
    base = make_tiny_model(tmp_path / "base", tiny_tokenizer, max_position_embeddings=32)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "train", "configs/smoke.yaml", "--pretrained_model_name", str(base),
         "--corpus_dir", str(fixtures_dir), "--downstream_model_dir", str(out),
         "--cache_dir", str(tmp_path / "cache"), "--max_seq_length", "200", "--max_steps", "3",
         "--batch_size", "64", "--run_test", "false"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    note = f"note: --max_seq_length 200 is more than {base} has position embeddings for; using 32."
    assert note in proc.stdout
    assert yaml.safe_load((out / "train_config.yaml").read_text())["max_seq_length"] == 32
    last = proc.stdout.strip().splitlines()[-1]
    assert "nan" not in last and "test split not scored (--run_test false)" in last
    metrics = json.loads((out / "metrics.json").read_text())
    assert last.startswith(f"best checkpoint: validation accuracy {metrics['val_acc']:.4f} on 60 reviews")
    assert "test_acc" not in metrics and (out / "export" / "model.safetensors").is_file()
