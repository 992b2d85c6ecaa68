"""nsmc.runtime: every backend gives the probabilities torch fp32 gives, on the tiny model.

Tolerances (max absolute difference of probabilities, random-weight 2-layer model, hidden 32):
- onnx (fp32 graph): 1e-5, i.e. float rounding only.
- int8 / onnx-int8 (8-bit weights and activations): 0.02, plus the predicted class must match
  wherever fp32 is not a near tie (|p - 0.5| > 0.02).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nsmc.encoding import pad_batch
from nsmc.loading import load_classifier
from nsmc.runtime import RUNTIMES, build_runtime, cache_folder

TEXTS = ["정말 재밌었다", "시간이 아깝다. 최악", "ㅋㅋㅋㅋ", "",
         "배우 연기는 좋은데 스토리가 너무 뻔하고 지루했다 " * 6, "굿"]
TOL = {"torch": 1e-6, "onnx": 1e-5, "int8": 0.02, "onnx-int8": 0.02}


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_classifier(tiny_model_dir)


@pytest.fixture(scope="module")
def batches(loaded):
    model, tokenizer = loaded
    ids = [tokenizer(t)["input_ids"] for t in TEXTS]
    return [
        pad_batch(ids, tokenizer.pad_token_id),  # padded rows of very different lengths
        pad_batch(ids[:1], tokenizer.pad_token_id),  # one review, no padding (the app's single call)
        pad_batch([ids[3]], tokenizer.pad_token_id),  # [CLS] [SEP] only: sequence length 2
        pad_batch(ids * 6, tokenizer.pad_token_id, max_length=128),  # batch 36, length 128, all-ones rows too
    ]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runtime-cache")


@pytest.mark.parametrize("name", RUNTIMES)
def test_runtime_agrees_with_torch_fp32(name, loaded, batches, tiny_model_dir, cache_dir):
    model, _ = loaded
    ref = build_runtime(model, "torch")
    rt = build_runtime(model, name, model_path=tiny_model_dir, cache_dir=cache_dir)
    assert rt.name == name
    for batch, wide in zip(batches, [False, True, False, True]):  # a lone pass may run on every core
        p_ref = ref.probs(**batch)
        p = rt.probs(**batch, wide=wide)
        assert p.shape == p_ref.shape == (len(batch["input_ids"]), 2) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
        np.testing.assert_allclose(p, p_ref, atol=TOL[name], rtol=0)
        clear = np.abs(p_ref[:, 1] - 0.5) > TOL[name]
        assert (p.argmax(1) == p_ref.argmax(1))[clear].all()
        # numpy inputs work the same as torch tensors
        as_numpy = rt.logits(batch["input_ids"].numpy(), batch["attention_mask"].numpy())
        np.testing.assert_allclose(as_numpy, rt.logits(**batch), atol=1e-6)


def test_int8_leaves_the_model_alone(loaded):
    model, _ = loaded
    build_runtime(model, "int8")
    assert isinstance(model.bert.encoder.layer[0].attention.self.query, torch.nn.Linear)
    assert model.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.float32


def test_onnx_cache_is_reused_and_keyed_by_mtime(loaded, tiny_model_dir, cache_dir):
    model, _ = loaded
    folder = cache_folder(tiny_model_dir, cache_dir) / "onnx-int8"
    build_runtime(model, "onnx-int8", model_path=tiny_model_dir, cache_dir=cache_dir)
    assert (folder / "model.onnx").is_file() and (folder.parent / "onnx" / "model.onnx").is_file()
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    build_runtime(model, "onnx-int8", model_path=tiny_model_dir, cache_dir=cache_dir)
    assert (folder / "model.onnx").stat().st_mtime_ns == stamp  # not rebuilt
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left
    weights = tiny_model_dir / "model.safetensors"
    st = weights.stat()
    try:
        import os

        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert cache_folder(tiny_model_dir, cache_dir) != folder.parent  # a changed model gets a new graph
    finally:
        os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_unknown_runtime_is_refused(loaded):
    with pytest.raises(ValueError, match="onnx-int8"):
        build_runtime(loaded[0], "tensorrt")


def test_unwritable_cache_falls_back_to_a_temporary_export(loaded, batches, tiny_model_dir, tmp_path):
    model, _ = loaded
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    notes = []
    rt = build_runtime(model, "onnx", model_path=tiny_model_dir, cache_dir=blocker, log=notes.append)
    expected = build_runtime(model, "torch").probs(**batches[0])
    np.testing.assert_allclose(rt.probs(**batches[0]), expected, atol=1e-5)
    assert any("temporary folder" in n for n in notes)
