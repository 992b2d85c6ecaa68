import numpy as np
import torch

from train.config import TrainConfig
from train.data import LengthGroupedSampler, ClassificationDataModule, split_train_val


def test_length_grouped_sampler_is_a_permutation_with_tight_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 128, size=3200)
    order = list(LengthGroupedSampler(lengths, batch_size=32, seed=1))
    assert sorted(order) == list(range(3200))
    batches = [lengths[order[i : i + 32]] for i in range(0, 3200, 32)]
    waste = sum(len(b) * b.max() - b.sum() for b in batches)  # pad tokens in grouped batches
    shuffled = lengths[rng.permutation(3200)].reshape(100, 32)
    random_waste = sum(32 * b.max() - b.sum() for b in shuffled)
    assert waste < 0.1 * random_waste  # grouping removes most of the padding


def test_sampler_reshuffles_each_epoch_reproducibly():
    lengths = np.arange(100)
    s = LengthGroupedSampler(lengths, 10, seed=3)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first


def test_split_is_seeded_and_disjoint():
    a_train, a_val = split_train_val(100, 10, seed=7)
    b_train, b_val = split_train_val(100, 10, seed=7)
    assert np.array_equal(a_val, b_val) and np.array_equal(a_train, b_train)
    assert len(a_val) == 10 and not set(a_train) & set(a_val) and len(a_train) + len(a_val) == 100
    assert not np.array_equal(split_train_val(100, 10, seed=8)[1], a_val)


def test_datamodule_on_fixtures(tmp_path, fixtures_dir, tiny_tokenizer):
    cfg = TrainConfig(corpus_dir=str(fixtures_dir), val_size=50, batch_size=16, cache_dir=str(tmp_path))
    dm = ClassificationDataModule(cfg, tiny_tokenizer)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train), len(dm.val), len(dm.test)) == (350, 50, 120)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape[0] == 16 and batch["input_ids"].shape[1] < 128  # dynamic padding
    assert batch["labels"].dtype == torch.long
    # fixed shapes for XLA/TPU
    dm_tpu = ClassificationDataModule(cfg, tiny_tokenizer, fixed_length=True)
    dm_tpu.setup("fit")
    assert next(iter(dm_tpu.val_dataloader()))["input_ids"].shape[1] == 128
