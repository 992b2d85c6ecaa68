"""Shared fixtures: tiny models and data built locally, so no test touches the network."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Set before transformers / gradio are imported anywhere in the test session.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ONNX graphs built for the tests' throwaway models go to a temporary folder, not the project's
# .cache/runtime/ (each run's models have new paths, so each run would add folders there). Set
# here, before any test module copies os.environ for the subprocesses it starts.
os.environ["NSMC_RUNTIME_CACHE"] = tempfile.mkdtemp(prefix="nsmc-test-runtime-")
atexit.register(shutil.rmtree, os.environ["NSMC_RUNTIME_CACHE"], ignore_errors=True)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # bench/app_server.py: the app launcher tests share

TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=128)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def make_tiny_model(out_dir: Path, tokenizer, seed: int = 0, labels=None, **overrides) -> Path:
    """A random 2-layer BERT classifier with readable labels (default NSMC's two), saved like an export."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from nsmc.corpus import LABELS

    labels = list(labels or LABELS)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
        **{**TINY_BERT, **overrides},
    )
    BertForSequenceClassification(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from train.vocab import read_texts, train_wordpiece

    texts = read_texts([FIXTURES / "ratings_train.txt", FIXTURES / "reviews_unlabeled.txt"])
    return train_wordpiece(texts, vocab_size=1500, min_frequency=1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """An exported-model-shaped folder (random weights) with a metrics.json, for serving tests."""
    out = make_tiny_model(tmp_path_factory.mktemp("tiny-model"), tiny_tokenizer)
    (out / "metrics.json").write_text(json.dumps({"test_acc": 0.5, "test_f1": 0.5, "val_acc": 0.5}))
    return out


@pytest.fixture(scope="session")
def app_server(tiny_model_dir, tmp_path_factory):
    """(url, process) of one real `app.py` serving the tiny model, shared by the app, security and
    browser tests (each start costs ~10 s of imports)."""
    from app_server import running_app

    with running_app(tiny_model_dir, tmp_path_factory.mktemp("app") / "app.log") as (url, proc):
        yield url, proc
