"""Pre-train a small BERT from scratch with masked-language modelling on unlabeled reviews.

Usage:
    python -m train.pretrain configs/pretrain-small.yaml            # the shipped model's pre-training
    python -m train.pretrain configs/pretrain-smoke.yaml            # a 1-minute CPU check
    python -m train.pretrain configs/pretrain-small.yaml --resume   # continue from checkpoints/last.ckpt

Trains a WordPiece vocabulary on the texts (unless --tokenizer is given), then a BertForMaskedLM,
and exports it to OUTPUT_DIR/export, a folder that `python -m train --pretrained_model_name
OUTPUT_DIR/export` fine-tunes like any pretrained model. KcBERT was pre-trained the same way, on
comments; here the 642k in-domain reviews of ../shared/data/nsmc/reviews_unlabeled.txt.gz.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from nsmc import loading
from nsmc.encoding import Encoded, encode_file, pad_batch
from nsmc.errors import UserError
from train.data import EncodedDataset, LengthGroupedSampler, split_train_val
from train.module import configure_schedule


class MaskingCollate:
    """Pads a batch and masks it for MLM, fresh every time a review is seen (dynamic masking, as in
    RoBERTa)."""

    def __init__(self, tokenizer, mlm_probability: float):
        self.pad_id, self.mask_id = tokenizer.pad_token_id, tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.p = mlm_probability

    def __call__(self, items):
        batch = pad_batch([ids for ids, _ in items], self.pad_id, pad_to_multiple_of=8)
        ids = batch["input_ids"]
        labels = ids.clone()
        can_mask = ~torch.isin(ids, self.special)
        masked = (torch.rand(ids.shape) < self.p) & can_mask
        labels[~masked] = -100  # loss only on masked positions
        replace = masked & (torch.rand(ids.shape) < 0.8)
        randomize = masked & ~replace & (torch.rand(ids.shape) < 0.5)
        ids = ids.masked_fill(replace, self.mask_id)
        ids = torch.where(randomize, torch.randint(len(self.special), self.vocab_size, ids.shape), ids)
        return {"input_ids": ids, "attention_mask": batch["attention_mask"], "labels": labels}


class MaskedLM(L.LightningModule):
    def __init__(self, model, tokenizer, cfg):
        super().__init__()
        self.model, self.cfg = model.train(), cfg
        self.save_hyperparameters({k: v for k, v in vars(cfg).items()})
        self._extras = loading.checkpoint_extras(model, tokenizer)

    def _step(self, batch, stage: str):
        out = self.model(**batch)
        masked = batch["labels"] != -100
        acc = (out.logits.argmax(-1)[masked] == batch["labels"][masked]).float().mean()
        bs = len(batch["labels"])
        self.log(f"{stage}_loss", out.loss, prog_bar=True, batch_size=bs, sync_dist=stage == "val")
        self.log(f"{stage}_acc", acc, prog_bar=True, batch_size=bs, sync_dist=stage == "val")
        return out.loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        return configure_schedule(self, self.model, self.cfg)

    def on_save_checkpoint(self, ckpt: dict) -> None:
        ckpt[loading.CHECKPOINT_KEY] = self._extras


def read_corpus(cfg, tokenizer) -> Encoded:
    parts = [encode_file(p.strip(), tokenizer, cfg.max_seq_length, cfg.cache_dir)
             for p in cfg.texts.split(",") if p.strip()]
    if not parts:
        raise UserError("--texts names no file")
    offsets = [parts[0].offsets]
    for prev, part in zip(parts, parts[1:]):
        offsets.append(part.offsets[1:] + offsets[-1][-1])
    return Encoded(np.concatenate([p.ids for p in parts]), np.concatenate(offsets),
                   np.concatenate([p.labels for p in parts]))


def get_tokenizer(cfg):
    from nsmc.loading import load_tokenizer
    from train.vocab import read_texts, train_wordpiece

    if cfg.tokenizer:
        return load_tokenizer(cfg.tokenizer)
    saved = cfg.out_dir / "tokenizer"
    if (saved / "tokenizer_config.json").is_file():  # a resumed run keeps its vocabulary
        return load_tokenizer(saved)
    files = [p.strip() for p in cfg.texts.split(",") if p.strip()]
    for f in files:
        if not Path(f).is_file():
            raise UserError(f"--texts: {f} not found (one review a line, plain or .gz; "
                            "e.g. ../shared/data/nsmc/reviews_unlabeled.txt.gz)")
    start = time.time()
    tokenizer = train_wordpiece(read_texts(files), cfg.vocab_size)
    tokenizer.save_pretrained(saved)
    print(f"trained a {len(tokenizer):,}-token WordPiece vocabulary in {time.time() - start:.0f} s "
          f"-> {saved}")
    return tokenizer


def run(cfg) -> dict:
    from transformers import BertConfig, BertForMaskedLM

    from train.trainer import best_checkpoint, build_trainer, check_output_dir, resume_path

    # 1. Settings; fail early if the output cannot be written.
    check_output_dir(cfg.out_dir)
    L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resume_path(cfg)

    # 2. Vocabulary, then the reviews encoded with it (cached) and a held-out slice for validation.
    tokenizer = get_tokenizer(cfg)
    corpus = read_corpus(cfg, tokenizer)
    train_idx, val_idx = split_train_val(len(corpus), cfg.val_size, cfg.seed)
    train, val = corpus.subset(train_idx), corpus.subset(val_idx)
    collate = MaskingCollate(tokenizer, cfg.mlm_probability)
    workers = dict(num_workers=cfg.cpu_workers, persistent_workers=cfg.cpu_workers > 0)
    train_loader = DataLoader(EncodedDataset(train), batch_size=cfg.batch_size, collate_fn=collate,
                              sampler=LengthGroupedSampler(train.lengths(), cfg.batch_size, cfg.seed),
                              **workers)
    val_loader = DataLoader(EncodedDataset(val), batch_size=cfg.batch_size, collate_fn=collate, **workers)

    # 3. A BERT of the chosen size, random weights.
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size,
                        num_hidden_layers=cfg.num_hidden_layers,
                        num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
                        max_position_embeddings=cfg.max_seq_length, pad_token_id=tokenizer.pad_token_id)
    model = BertForMaskedLM(config)
    print(f"BertForMaskedLM: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; "
          f"{len(train):,} reviews for training, {len(val):,} for validation")

    # 4. Fit, keeping the checkpoint with the lowest validation loss.
    module = MaskedLM(model, tokenizer, cfg)
    trainer = build_trainer(cfg, monitor="val_loss", mode="min", max_epochs=cfg.epochs)
    start = time.time()
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt_path,
                weights_only=True)
    seconds = time.time() - start

    # 5. Export the best checkpoint as a plain Hugging Face folder.
    best = best_checkpoint(trainer, cfg.checkpoint_dir)
    metrics = {"val_loss": float(trainer.checkpoint_callback.best_model_score or float("nan")),
               "global_step": trainer.global_step, "fit_seconds": round(seconds, 1),
               "steps_per_second": round(trainer.global_step / max(seconds, 1e-9), 3),
               "best_checkpoint": best}
    if trainer.is_global_zero:
        ckpt = loading.read_checkpoint(best)
        model = BertForMaskedLM(config)
        model.load_state_dict({k[len(loading.PREFIX):]: v for k, v in ckpt["state_dict"].items()})
        model.save_pretrained(cfg.export_dir)
        tokenizer.save_pretrained(cfg.export_dir)
        (cfg.export_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"masked-LM validation loss {metrics['val_loss']:.3f}; "
              f"pretrained model exported to {cfg.export_dir}")
    return metrics


def main(argv=None) -> None:
    from nsmc.cli import command_errors
    from train.config import PretrainConfig, parse

    with command_errors() as outputs:
        cfg = parse(PretrainConfig, argv, description=__doc__)
        outputs.watch(cfg.out_dir)
        run(cfg)


if __name__ == "__main__":
    main()
