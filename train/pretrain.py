"""Pre-train a small BERT from scratch on unlabeled reviews: masked-LM (BERT) or replaced-token
detection (ELECTRA).

Usage:
    python -m train.pretrain configs/pretrain-small.yaml            # the shipped model's pre-training
    python -m train.pretrain configs/pretrain-small.yaml --objective electra
    python -m train.pretrain configs/pretrain-smoke.yaml            # a 1-minute CPU check
    python -m train.pretrain configs/pretrain-small.yaml --resume   # continue from checkpoints/last.ckpt

Trains a WordPiece vocabulary on the texts (unless --tokenizer is given), then the model, and exports
it (a BertForMaskedLM, or ELECTRA's discriminator as a BertModel) to OUTPUT_DIR/export, a folder that
`python -m train --pretrained_model_name OUTPUT_DIR/export` fine-tunes like any pretrained model.
KcBERT was pre-trained by masked-LM on comments; here the texts are the 642k in-domain reviews of
../shared/data/nsmc/reviews_unlabeled.txt.gz.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForMaskedLM, BertModel

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
        if not masked.any() and can_mask.any():  # a batch of a few short reviews can draw none: no loss then
            candidates = can_mask.view(-1).nonzero().squeeze(1)
            masked.view(-1)[candidates[torch.randint(len(candidates), ())]] = True
        labels[~masked] = -100  # loss only on masked positions
        replace = masked & (torch.rand(ids.shape) < 0.8)
        randomize = masked & ~replace & (torch.rand(ids.shape) < 0.5)
        ids = ids.masked_fill(replace, self.mask_id)
        ids = torch.where(randomize, torch.randint(len(self.special), self.vocab_size, ids.shape), ids)
        return {"input_ids": ids, "attention_mask": batch["attention_mask"], "labels": labels}


class MaskedLM(L.LightningModule):
    """Masked-language modelling (BERT). The vocabulary projection runs on the masked positions only: at
    this size it costs as much per token as the whole encoder, and the loss needs 15% of the tokens."""

    def __init__(self, model, tokenizer, cfg):
        super().__init__()
        self.model, self.cfg = model.train(), cfg
        self.save_hyperparameters({k: v for k, v in vars(cfg).items()})
        self._extras = loading.checkpoint_extras(model, tokenizer)

    def _step(self, batch, stage: str):
        hidden = self.model.bert(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        masked = batch["labels"] != -100
        targets = batch["labels"][masked]
        logits = self.model.cls(hidden[masked])
        loss = F.cross_entropy(logits.float(), targets)
        acc = (logits.argmax(-1) == targets).float().mean()
        self._log(stage, len(targets), loss=loss, acc=acc)
        return loss

    def _log(self, stage: str, tokens: int, **values) -> None:
        """Means over the batch's masked (or all) tokens, so an epoch's mean weighs each token once."""
        for name, value in values.items():
            self.log(f"{stage}_{name}", value, prog_bar=name in ("loss", "acc"), sync_dist=stage == "val",
                     batch_size=tokens)

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        return configure_schedule(self, self, self.cfg)

    def on_save_checkpoint(self, ckpt: dict) -> None:
        ckpt[loading.CHECKPOINT_KEY] = self._extras


class ReplacedTokenDetection(MaskedLM):
    """ELECTRA (Clark et al., ICLR 2020): a narrow generator fills the masked positions with tokens it
    samples; the model learns, at every position, whether its token is the original. Learning from every
    token instead of 15% of them gives more per step. The generator reads the model's token embeddings
    through a projection, so what it learns about words is shared. `self.model` (a BertModel) is exported."""

    def __init__(self, model, tokenizer, cfg):
        super().__init__(model, tokenizer, cfg)
        width, gen_width = model.config.hidden_size, cfg.generator_hidden_size
        # The generator reads the model's token embeddings (inputs_embeds), so its own table is one row.
        gen_config = BertConfig(**{**model.config.to_dict(), "vocab_size": 1, "hidden_size": gen_width,
                                   "intermediate_size": 4 * gen_width,
                                   "num_attention_heads": max(1, gen_width // 64)})
        self.generator = BertModel(gen_config, add_pooling_layer=False)
        self.generator_in = torch.nn.Linear(width, gen_width)
        self.generator_out = torch.nn.Sequential(torch.nn.Linear(gen_width, width), torch.nn.GELU(),
                                                 torch.nn.LayerNorm(width, eps=model.config.layer_norm_eps))
        self.generator_bias = torch.nn.Parameter(torch.zeros(model.config.vocab_size))
        self.detector = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.GELU(),
                                            torch.nn.Linear(width, 1))

    def _step(self, batch, stage: str):
        ids, attention, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        masked = labels != -100
        embeddings = self.model.get_input_embeddings()
        gen_hidden = self.generator(inputs_embeds=self.generator_in(embeddings(ids)),
                                    attention_mask=attention).last_hidden_state
        gen_logits = self.generator_out(gen_hidden[masked]) @ embeddings.weight.T + self.generator_bias
        targets = labels[masked]
        gen_loss = F.cross_entropy(gen_logits.float(), targets)
        with torch.no_grad():  # sampling is not differentiable: the generator learns from its own loss only
            samples = torch.distributions.Categorical(logits=gen_logits.float()).sample()
            corrupted, replaced = corrupt(ids, labels, samples)
        hidden = self.model(corrupted, attention_mask=attention).last_hidden_state
        real = attention.bool()
        detected = self.detector(hidden[real]).squeeze(-1)
        det_loss = F.binary_cross_entropy_with_logits(detected.float(), replaced[real].float())
        loss = gen_loss + self.cfg.discriminator_weight * det_loss
        self._log(stage, int(real.sum()), loss=loss, generator_loss=gen_loss, detection_loss=det_loss,
                  acc=((detected > 0) == replaced[real]).float().mean(),
                  generator_acc=(gen_logits.argmax(-1) == targets).float().mean(),
                  replaced=replaced[real].float().mean())
        return loss


def corrupt(ids: torch.Tensor, labels: torch.Tensor, samples: torch.Tensor):
    """The original review (masked positions hold their label) with the masked positions set to the
    generator's samples, and where it now differs: a sample of the right token counts as original."""
    masked = labels != -100
    original = torch.where(masked, labels, ids)
    corrupted = original.clone()
    corrupted[masked] = samples
    return corrupted, corrupted != original


def electra_body(config: BertConfig) -> BertModel:
    return BertModel(config, add_pooling_layer=False)  # the pooler starts in fine-tuning, as after masked-LM


OBJECTIVES = {"mlm": (MaskedLM, BertForMaskedLM), "electra": (ReplacedTokenDetection, electra_body)}


def text_files(cfg) -> list[str]:
    """The files of --texts, each checked to exist (before a vocabulary or an encoding is started)."""
    files = [p.strip() for p in cfg.texts.split(",") if p.strip()]
    if not files:
        raise UserError("--texts names no file")
    for f in files:
        if not Path(f).is_file():
            raise UserError(f"--texts: {f} not found (one review a line, plain or .gz; "
                            "e.g. ../shared/data/nsmc/reviews_unlabeled.txt.gz)")
    return files


def read_corpus(cfg, tokenizer) -> Encoded:
    parts = [encode_file(p, tokenizer, cfg.max_seq_length, cfg.cache_dir) for p in text_files(cfg)]
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
    start = time.time()
    tokenizer = train_wordpiece(read_texts(text_files(cfg)), cfg.vocab_size)
    tokenizer.save_pretrained(saved)
    print(f"trained a {len(tokenizer):,}-token WordPiece vocabulary in {time.time() - start:.0f} s "
          f"-> {saved}")
    return tokenizer


def run(cfg) -> dict:
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
    objective, architecture = OBJECTIVES[cfg.objective]
    model = architecture(config)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{type(model).__name__} ({cfg.objective}): {params:.1f}M parameters; {len(train):,} reviews for "
          f"training, {len(val):,} for validation")

    # 4. Fit, keeping the checkpoint with the lowest validation loss.
    module = objective(model, tokenizer, cfg)
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
        model = architecture(config)
        model.load_state_dict(loading.classifier_state_dict(ckpt))
        model.save_pretrained(cfg.export_dir)
        tokenizer.save_pretrained(cfg.export_dir)
        (cfg.export_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"{cfg.objective} validation loss {metrics['val_loss']:.3f}; "
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
