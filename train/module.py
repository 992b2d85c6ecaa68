"""The Lightning module: a Hugging Face sequence classifier, its optimizer, schedule and metrics."""

from __future__ import annotations

import lightning as L
import torch
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score
from lightning.pytorch.callbacks import Timer

from nsmc import loading


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights (the BERT recipe)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def configure_schedule(module: L.LightningModule, model: torch.nn.Module, cfg) -> dict:
    """AdamW plus the chosen schedule, returned under the key Lightning reads: `lr_scheduler`.
    (The tutorial returned `scheduler`, which Lightning ignores, so its LR never changed.)"""
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.learning_rate)
    if cfg.scheduler == "exponential":
        scheduler = {"scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.gamma), "interval": "epoch"}
    elif cfg.scheduler == "linear":
        scheduler = {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(module.trainer, cfg.warmup_ratio)), "interval": "step"}
    else:
        return {"optimizer": optimizer}
    return {"optimizer": optimizer, "lr_scheduler": scheduler}


def linear_schedule(trainer, warmup_ratio: float):
    """Linear warmup, then linear decay to zero at the last step, or at the end of `max_time` if that
    comes first ("budgeted training", Li et al., ICLR 2020): a run cut by a time limit still ends with
    a decayed learning rate instead of stopping mid-way at a high one.

    A closure, not a callable object: LambdaLR pickles an object's __dict__ into the checkpoint,
    which would then no longer load with weights_only=True."""
    total = max(1, int(trainer.estimated_stepping_batches))
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)  # present when max_time is set
    budget = 0.97 * timer._duration if timer is not None and timer._duration else None  # margin: last validation

    def factor(step: int) -> float:
        done = (step + 1) / total
        if budget:
            done = max(done, (timer.time_elapsed("train") or 0.0) / budget)
        done = min(done, 1.0)
        if done < warmup_ratio:
            return done / warmup_ratio
        return max(0.0, (1.0 - done) / max(1e-9, 1.0 - warmup_ratio))

    return factor


class SentimentClassifier(L.LightningModule):
    def __init__(self, model, tokenizer, cfg):
        super().__init__()
        self.model, self.cfg = model.train(), cfg  # from_pretrained returns eval mode: dropout would be off
        # Plain values only, so the checkpoint loads with torch.load(weights_only=True).
        self.save_hyperparameters({k: v for k, v in vars(cfg).items()})
        self._extras = loading.checkpoint_extras(model, tokenizer)
        self.train_acc, self.val_acc, self.test_acc = BinaryAccuracy(), BinaryAccuracy(), BinaryAccuracy()
        self.val_f1, self.test_f1 = BinaryF1Score(), BinaryF1Score()

    def forward(self, batch):
        return self.model(**batch)

    def training_step(self, batch, batch_idx):
        out = self(batch)
        self.train_acc(out.logits.argmax(-1), batch["labels"])
        self.log("train_loss", out.loss, prog_bar=True)
        self.log("train_acc", self.train_acc, prog_bar=True)
        return out.loss

    def _eval_step(self, batch, stage: str):
        out = self(batch)
        preds = out.logits.argmax(-1)
        acc, f1 = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_f1")
        acc(preds, batch["labels"])
        f1(preds, batch["labels"])
        bs = len(batch["labels"])
        self.log(f"{stage}_loss", out.loss, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log(f"{stage}_acc", acc, prog_bar=True, batch_size=bs)
        self.log(f"{stage}_f1", f1, batch_size=bs)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, "test")

    def configure_optimizers(self):
        return configure_schedule(self, self.model, self.cfg)

    def on_save_checkpoint(self, ckpt: dict) -> None:
        # Config and tokenizer travel inside the checkpoint: it serves and exports on its own.
        ckpt[loading.CHECKPOINT_KEY] = self._extras
        ckpt[RNG_KEY] = rng_state()

    def on_load_checkpoint(self, ckpt: dict) -> None:
        self._rng_to_restore = ckpt.get(RNG_KEY)

    def on_train_start(self) -> None:
        # After Lightning's set-up, just before the first step: a resumed run draws the same
        # dropout masks as an uninterrupted one would have from here on.
        if getattr(self, "_rng_to_restore", None):
            set_rng_state(self._rng_to_restore)
        self._rng_to_restore = None


RNG_KEY = "rng"


def rng_state() -> dict:
    """The torch random state (dropout) as plain tensors: Lightning does not save it, and numpy's or
    Python's state would not load with weights_only=True (nothing in training draws from them)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
