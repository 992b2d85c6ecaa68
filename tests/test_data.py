import numpy as np
import pytest
import torch

from nsmc.errors import UserError
from train.config import TrainConfig
from train.data import (ClassificationDataModule, EpochSampler, LengthGroupedSampler, ResumableDataLoader,
                        split_train_val)


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


def topics_config(fixtures_dir, tmp_path, **overrides) -> TrainConfig:
    settings = dict(train_file=str(fixtures_dir / "topics_train.tsv"),
                    test_file=str(fixtures_dir / "topics_test.jsonl"), text_column_names=["text"],
                    label_column_name="topic", batch_size=16, cache_dir=str(tmp_path))
    return TrainConfig(**{**settings, **overrides})


def test_a_small_corpus_trains_with_the_default_validation_size(tmp_path, fixtures_dir, tiny_tokenizer):
    """Issue 11: 400 reviews, no --val_size: validation is 10% of them, not the 5,000 that do not exist."""
    dm = ClassificationDataModule(TrainConfig(corpus_dir=str(fixtures_dir), cache_dir=str(tmp_path)),
                                  tiny_tokenizer)
    dm.setup("fit")
    assert (len(dm.train), len(dm.val)) == (360, 40)
    with pytest.raises(UserError, match="too few to carve 400 out.*--val_size"):
        bad = ClassificationDataModule(
            TrainConfig(corpus_dir=str(fixtures_dir), val_size=400, cache_dir=str(tmp_path)), tiny_tokenizer)
        bad.setup("fit")


def test_own_files_labels_splits_and_rows(tmp_path, fixtures_dir, tiny_tokenizer):
    dm = ClassificationDataModule(topics_config(fixtures_dir, tmp_path), tiny_tokenizer)
    assert dm.label_names == ["food", "sports", "travel"]
    dm.setup()
    assert (len(dm.train), len(dm.val), len(dm.test)) == (270, 30, 60)
    assert set(dm.train.labels.tolist()) == {0, 1, 2}
    assert dm.rows["test"] == {"file": "topics_test.jsonl", "rows": 60} and dm.rows["train"]["rows"] == 270
    assert next(iter(dm.train_dataloader()))["labels"].max() <= 2
    examples = dm.examples()
    assert 3 <= len(examples) <= 6 and all(isinstance(t, str) and t for t in examples)
    # --label_names sets the class order, and the cache is keyed by it
    ordered = ClassificationDataModule(
        topics_config(fixtures_dir, tmp_path, label_names=["travel", "food", "sports"]), tiny_tokenizer)
    ordered.setup("test")
    first = fixtures_dir.joinpath("topics_test.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert '"travel"' in first and ordered.test.labels[0] == 0 and dm.test.labels[0] == 2


def test_a_test_label_the_train_file_lacks_is_an_error(tmp_path, fixtures_dir, tiny_tokenizer):
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "오늘 날씨 맑음", "topic": "weather"}\n', encoding="utf-8")
    dm = ClassificationDataModule(topics_config(fixtures_dir, tmp_path, test_file=str(test)), tiny_tokenizer)
    with pytest.raises(UserError, match="'weather'.*known: food, sports, travel"):
        dm.setup("test")


def test_without_a_test_file_there_is_no_test_split(tmp_path, fixtures_dir, tiny_tokenizer):
    cfg = topics_config(fixtures_dir, tmp_path, test_file=None,
                        validation_file=str(fixtures_dir / "topics_test.jsonl"))
    assert cfg.run_test is False
    logs = []
    dm = ClassificationDataModule(cfg, tiny_tokenizer, log=logs.append)
    dm.prepare_data()
    dm.setup()
    assert dm.test is None and (len(dm.train), len(dm.val)) == (300, 60)
    assert any("No --test_file" in line for line in logs)


def test_examples_come_from_the_train_file_when_the_corpus_has_no_test_split(tmp_path, fixtures_dir,
                                                                             tiny_tokenizer):
    (tmp_path / "ratings_train.txt").write_bytes((fixtures_dir / "ratings_train.txt").read_bytes())
    dm = ClassificationDataModule(
        TrainConfig(corpus_dir=str(tmp_path), run_test=False, cache_dir=str(tmp_path)), tiny_tokenizer)
    examples = dm.examples()
    assert len(examples) == 4 and all(10 <= len(t) <= 100 for t in examples)  # two of each label


# --- the sampler behind exact resumption ------------------------------------------------------------

def test_length_grouped_batches_stay_aligned():
    """The DataLoader cuts the index stream every batch_size: each cut must be one length group
    (sorted longest first), including after the one short batch of the last mega-batch."""
    lengths = np.random.default_rng(0).integers(1, 128, size=1_234)  # 1,234 = 1,200 + 34: a short batch
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=3, mega=150)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(len(lengths)))
        batches = [order[i : i + 8] for i in range(0, len(order), 8)]
        assert all(len(b) == 8 for b in batches[:-1])
        assert all(list(lengths[b]) == sorted(lengths[b], reverse=True) for b in batches)


@pytest.mark.parametrize("group", [True, False])
def test_sampler_resumes_at_the_next_batch(group):
    lengths = np.arange(100) % 17 + 1
    make = ((lambda: LengthGroupedSampler(lengths, 8, seed=1, mega=4)) if group
            else (lambda: EpochSampler(100, 8, seed=1)))
    dataset = list(range(100))  # item i is i: batches show the indices
    full = make()
    full.set_epoch(1)
    expected = [int(i) for i in full]
    loader = ResumableDataLoader(dataset, batch_size=8, sampler=make(), collate_fn=list)
    loader.sampler.set_epoch(1)
    seen = []
    for n, batch in enumerate(loader, start=1):
        seen += batch
        if n == 5:
            state = loader.state_dict()
            break
    assert state == {"epoch": 1, "batches": 5}
    resumed = ResumableDataLoader(dataset, batch_size=8, sampler=make(), collate_fn=list)
    resumed.load_state_dict(state)  # a fresh process: the sampler starts at epoch 0 until told
    rest = [i for batch in resumed for i in batch]
    assert seen + rest == expected
    assert resumed.state_dict() == {"epoch": 1, "batches": 13}  # 100 reviews / 8 = 13 batches
    finished = ResumableDataLoader(dataset, batch_size=8, sampler=make(), collate_fn=list)
    finished.load_state_dict({"epoch": 1, "batches": 13})  # saved at the end of epoch 1: resume with epoch 2
    assert finished.sampler.epoch == 2 and len([i for b in finished for i in b]) == 100
