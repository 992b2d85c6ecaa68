"""Labelled texts as a LightningDataModule: NSMC or a user's files -> cached encoding -> seeded
train/val split (or a validation file) -> padded batches."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Sampler

from nsmc import corpus
from nsmc.errors import UserError
from nsmc.encoding import Encoded, encode_cached, pad_batch

VAL_SIZE_CAP = 5000  # the default validation split: this many rows, or 10% of the train file if fewer


class EncodedDataset(Dataset):
    def __init__(self, encoded: Encoded):
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int):
        return self.encoded[i]


class EpochSampler(Sampler[int]):
    """A seeded shuffle per epoch (the same order for a seed and epoch in any process), resumable
    mid-epoch: `load_state_dict` makes the next pass start at the first batch not yet trained on.

    The position is counted by ResumableDataLoader and saved in every checkpoint by
    ClassificationDataModule.state_dict. Without it, a run resumed mid-epoch replays the start of the epoch,
    so it trains on different batches than an uninterrupted run would.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0
        self.start = 0  # batches skipped at the start of the current pass (when resuming)
        self._resume_at = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this each epoch
        if epoch != self.epoch:
            self._resume_at = 0  # a resume point belongs to the epoch it was saved in
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def num_batches(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def order(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.n)

    def __iter__(self):
        order = self.order(np.random.default_rng(self.seed + self.epoch))
        self.start, self._resume_at = self._resume_at, 0
        yield from order[self.start * self.batch_size :].tolist()

    def load_state_dict(self, state: dict) -> None:
        """Resume in `epoch` after `batches` batches (a finished epoch resumes at the next one).
        The epoch is set here, not only by Lightning's later set_epoch: worker processes start
        drawing indices as soon as the iterator exists."""
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= self.num_batches():
            epoch, batches = epoch + 1, 0
        self.epoch, self._resume_at = epoch, batches


class LengthGroupedSampler(EpochSampler):
    """Shuffled indices arranged so that each run of `batch_size` holds reviews of similar length.

    Shuffle, cut into mega-batches of 50 batches, sort each by length, cut into batches, shuffle
    the batches. Randomness stays (different neighbours every epoch), padding mostly goes: NSMC
    reviews are 14.5 tokens on average but up to 128, so a random batch is mostly padding.
    The one short batch (the tail of the last mega-batch) goes last: the DataLoader cuts the index
    stream every `batch_size`, so a short batch in the middle would misalign every batch after it,
    each then mixing two length groups.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int = 0, mega: int = 50):
        super().__init__(len(lengths), batch_size, seed)
        self.lengths, self.mega = lengths, mega

    def order(self, rng: np.random.Generator) -> np.ndarray:
        order = rng.permutation(len(self.lengths))
        size = self.batch_size * self.mega
        batches = []
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        full = [batches[b] for b in rng.permutation(len(batches)) if len(batches[b]) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        return np.concatenate(full + short) if batches else order


class ResumableDataLoader(DataLoader):
    """A DataLoader Lightning can checkpoint mid-epoch: `state_dict` says which epoch and how many of
    its batches were handed out (Lightning does not prefetch from a loader with a length, so that
    is how many were trained on). No new constructor arguments, so Lightning can re-create it."""

    def __iter__(self):
        sampler = self.sampler if isinstance(self.sampler, EpochSampler) else None
        for i, batch in enumerate(super().__iter__()):
            if sampler is not None:
                self._handed_out = (sampler.epoch, sampler.start + i + 1)
            yield batch

    def state_dict(self) -> dict:
        if not isinstance(self.sampler, EpochSampler):
            return {}  # e.g. wrapped in a DistributedSampler: no exact resume, as before
        epoch, batches = getattr(self, "_handed_out", (self.sampler.epoch, 0))
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict) -> None:
        if state and isinstance(self.sampler, EpochSampler):
            self.sampler.load_state_dict(state)


class Collate:
    """Pads a batch to its longest review (or to a fixed length for XLA, which recompiles per shape)."""

    def __init__(self, pad_id: int, fixed_length: int | None = None, pad_to_multiple_of: int | None = 8):
        self.pad_id, self.fixed_length, self.pad_to_multiple_of = pad_id, fixed_length, pad_to_multiple_of

    def __call__(self, items):
        batch = pad_batch([ids for ids, _ in items], self.pad_id, self.pad_to_multiple_of, self.fixed_length)
        batch["labels"] = torch.tensor([label for _, label in items], dtype=torch.long)
        return batch


def split_train_val(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of the train file: the tutorial validated (and chose checkpoints) on the test split."""
    if not 0 < val_size < n:
        raise ValueError(f"val_size={val_size} must be between 1 and the {n:,} training reviews")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def default_val_size(n: int) -> int:
    return min(VAL_SIZE_CAP, n // 10)


class ClassificationDataModule(L.LightningDataModule):
    """NSMC (cfg.corpus_dir or Korpora) or the user's cfg.train_file / validation_file / test_file."""

    def __init__(self, cfg, tokenizer, fixed_length: bool = False, log=print):
        super().__init__()
        self.cfg, self.tokenizer, self.log = cfg, tokenizer, log
        self.collate = Collate(tokenizer.pad_token_id, cfg.max_seq_length if fixed_length else None)
        self.train = self.val = self.test = None
        self.rows: dict[str, dict] = {}  # split -> {"file", "rows"} as used: for the model card
        self._train_file: corpus.LabelledTexts | None = None
        self._train_loader: ResumableDataLoader | None = None
        self._resume: dict = {}

    def corpus_root(self):
        return self.cfg.corpus_dir or self.cfg.downstream_corpus_root_dir

    def prepare_data(self) -> None:
        """Runs on one process per machine: download only if the files are not already there."""
        if self.cfg.train_file:
            if not self.cfg.test_file:
                self.log("No --test_file: the run reports validation scores only.")
            return
        if self.cfg.corpus_dir:
            corpus.find_split(self.cfg.corpus_dir, "train")  # fail now, with the message, if absent
            return
        try:
            corpus.find_split(self.cfg.downstream_corpus_root_dir, "train")
            corpus.find_split(self.cfg.downstream_corpus_root_dir, "test")
        except UserError:
            # Korpora always contacts its download URL first, so it is only called when needed.
            corpus.download(self.cfg.downstream_corpus_root_dir)

    def _read(self, path) -> corpus.LabelledTexts:
        if path == self.cfg.train_file and self._train_file is not None:
            return self._train_file
        cfg = self.cfg
        return corpus.read_labelled(path, cfg.text_column_names, cfg.label_column_name, log=self.log)

    @property
    def label_names(self) -> list[str]:
        """The classes, in the model's order: NSMC's two, or those of the train file."""
        if not self.cfg.train_file:
            return list(corpus.LABELS)
        if self._train_file is None:
            self._train_file = self._read(self.cfg.train_file)
        return corpus.label_order(self._train_file.labels, self.cfg.label_names, self.cfg.train_file,
                                  ratings=corpus.is_ratings(self.cfg.train_file))

    def _encode(self, split: str) -> Encoded:
        cfg = self.cfg
        if not cfg.train_file:
            path = corpus.find_split(self.corpus_root(), split)

            def read_nsmc():
                corpus.check_header(path)
                ratings = corpus.read_ratings(path)
                return ratings.documents, ratings.labels, ratings.summary()

            encoded = encode_cached(path, self.tokenizer, cfg.max_seq_length, read_nsmc, cfg.cache_dir,
                                    log=self.log)
        else:
            path = {"train": cfg.train_file, "validation": cfg.validation_file, "test": cfg.test_file}[split]
            names = self.label_names

            def read_file():
                data = self._read(path)
                return data.texts, corpus.label_ids(data.labels, names, path), data.summary()

            reading = {"text": cfg.text_column_names, "label": cfg.label_column_name, "labels": names}
            encoded = encode_cached(path, self.tokenizer, cfg.max_seq_length, read_file, cfg.cache_dir,
                                    reading, self.log)
        self.rows[split] = {"file": Path(path).name, "rows": len(encoded)}
        return encoded

    def setup(self, stage: str | None = None) -> None:
        cfg = self.cfg
        if stage in (None, "fit", "validate") and self.train is None:
            full = self._encode("train")
            if cfg.validation_file:
                self.train, self.val = full, self._encode("validation")
            else:
                val_size = default_val_size(len(full)) if cfg.val_size is None else cfg.val_size
                if not 0 < val_size < len(full):
                    raise UserError(
                        f"The train split has {len(full):,} rows, too few to carve {val_size:,} out for "
                        f"validation. "
                        + ("Lower --val_size, or pass --validation_file." if cfg.val_size else
                           "Use at least 10 rows, or pass --validation_file."))
                train_idx, val_idx = split_train_val(len(full), val_size, cfg.seed)
                self.train, self.val = full.subset(train_idx), full.subset(val_idx)
                name = self.rows["train"]["file"]
                self.rows["train"] = {"file": name, "rows": len(train_idx)}
                self.rows["validation"] = {"file": f"{name} (a seeded split)", "rows": len(val_idx)}
        if stage in (None, "test") and self.test is None and (cfg.test_file or not cfg.train_file):
            self.test = self._encode("test")

    def examples(self, n_per_label: int = 2, max_chars: int = 100) -> list[str]:
        """A few short texts of the test file (else the validation or train file), some of each label,
        for the app's examples."""
        cfg = self.cfg
        if cfg.train_file:
            data = self._read(cfg.test_file or cfg.validation_file or cfg.train_file)
            texts, labels = data.texts, data.labels
        else:
            try:
                path = corpus.find_split(self.corpus_root(), "test")
            except UserError:  # a corpus without a test split (--run_test false)
                path = corpus.find_split(self.corpus_root(), "train")
            ratings = corpus.read_ratings(path)
            texts, labels = ratings.documents, ratings.labels
        chosen: dict = {}
        for text, label in zip(texts, labels):
            if 10 <= len(text) <= max_chars and len(chosen.setdefault(label, [])) < n_per_label:
                chosen[label].append(text)
        return [t for group in chosen.values() for t in group]

    def train_dataloader(self) -> DataLoader:
        cfg = self.cfg
        if cfg.group_by_length:
            sampler = LengthGroupedSampler(self.train.lengths(), cfg.batch_size, cfg.seed)
        else:
            sampler = EpochSampler(len(self.train), cfg.batch_size, cfg.seed)
        # The generator only seeds worker processes; passing one keeps the global RNG (dropout) untouched.
        generator = torch.Generator().manual_seed(cfg.seed)
        loader = ResumableDataLoader(EncodedDataset(self.train), batch_size=cfg.batch_size, sampler=sampler,
                                     generator=generator, collate_fn=self.collate,
                                     num_workers=cfg.cpu_workers,
                                     persistent_workers=cfg.cpu_workers > 0)
        loader.load_state_dict(self._resume)
        self._train_loader, self._resume = loader, {}
        return loader

    # Where training is within the epoch, in every checkpoint, so --resume goes on with the next
    # unseen batch. Lightning also saves a stateful loader's state itself, but restores it only into
    # a loader built after the checkpoint is read, and ours is built before that: the LR schedule
    # asks for trainer.estimated_stepping_batches in configure_optimizers, which builds it.
    def state_dict(self) -> dict:
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state.get("train_loader") or {})

    def _eval_loader(self, encoded: Encoded) -> DataLoader:
        # Sorted by length: evaluation order does not matter, and sorted batches hardly pad.
        order = np.argsort(encoded.lengths(), kind="stable")
        dataset = torch.utils.data.Subset(EncodedDataset(encoded), order.tolist())
        # On several devices, each review scored once: the DistributedSampler Lightning would put here
        # repeats reviews to give every device as many, so an accuracy would count some of them twice.
        sampler = None
        if self.trainer is not None and self.trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=self.trainer.world_size,
                                                   rank=self.trainer.global_rank, shuffle=False)
        return DataLoader(dataset, batch_size=self.cfg.batch_size * 2, sampler=sampler,
                          collate_fn=self.collate, num_workers=self.cfg.cpu_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test)
