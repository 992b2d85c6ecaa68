"""The model shipped in models/nsmc-small: loads, is small, and gets obvious reviews right."""

import dataclasses
import json

import pytest
import torch

from conftest import ROOT

MODEL = ROOT / "models" / "nsmc-small"

POSITIVE = ["정말 재밌어요 최고의 영화", "배우들 연기가 너무 좋았고 감동적이었다",
            "꼭 다시 보고 싶은 명작입니다", "강력 추천합니다 시간 가는 줄 몰랐어요"]
NEGATIVE = ["시간 아깝다 최악의 영화", "돈 주고 보기 아까운 쓰레기", "지루하고 재미없어서 중간에 나왔다",
            "연기도 어색하고 스토리도 엉망"]


@pytest.fixture(scope="module")
def classifier():
    from nsmc.inference import TextClassifier

    return TextClassifier.load(MODEL)


def test_export_contract_and_size():
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "README.md",
                 "train_config.yaml"):
        assert (MODEL / name).is_file(), name
    assert sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file()) <= 25 * 2**20
    config = json.loads((MODEL / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    metrics = json.loads((MODEL / "metrics.json").read_text())
    assert metrics["test_acc"] >= 0.88 and metrics["test_n"] == 50_000  # the README's claim


def test_obvious_reviews(classifier):
    probs = classifier.predict_proba(POSITIVE + NEGATIVE)
    assert probs.argmax(1).tolist() == [1] * len(POSITIVE) + [0] * len(NEGATIVE)


def test_loads_with_transformers_pipeline():
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(MODEL))
    assert classify.model.dtype == torch.float32  # stored float16; float16 on CPU is slow
    assert classify(POSITIVE[0])[0]["label"] == "positive"


def test_preset_reproduces_the_shipped_run():
    import yaml

    from train.config import TrainConfig, parse

    preset = dataclasses.asdict(parse(TrainConfig, [str(ROOT / "configs" / "nsmc-small.yaml")]))
    shipped = yaml.safe_load((MODEL / "train_config.yaml").read_text(encoding="utf-8"))
    # Folders and loader processes are the machine's; the rest is the recipe.
    machine = {"pretrained_model_name", "corpus_dir", "downstream_model_dir", "cpu_workers"}
    differ = {k: (preset.get(k), v) for k, v in shipped.items() if k not in machine and preset.get(k) != v}
    assert not differ, differ
