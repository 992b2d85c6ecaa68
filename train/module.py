"""The Lightning module: a Hugging Face sequence classifier, its optimizer, schedule and metrics."""

from __future__ import annotations

import lightning as L
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from lightning.pytorch.callbacks import Timer

from nsmc import loading


def build_model(cfg, label_names: list[str], log=print):
    """A sequence classifier for `label_names` from cfg.pretrained_model_name: an encoder gets a new
    head; a classifier for the same labels keeps its head; one for other labels gets a new head too."""
    from transformers import AutoModelForSequenceClassification as Classifier

    name = cfg.pretrained_model_name
    config = loading.load_config(name, id2label=dict(enumerate(label_names)),
                         label2id={n: i for i, n in enumerate(label_names)})
    fp32 = {"dtype": torch.float32}  # whatever the base was saved in: a float16 export gave NaN losses on CPU
    if cfg.from_scratch:
        log(f"Every weight is initialised afresh (--from_scratch): {name}'s architecture, not its weights.")
        return Classifier.from_config(config, **fp32)
    base_config = loading.load_config(name)
    is_classifier = any(a.endswith("ForSequenceClassification") for a in base_config.architectures or [])
    base_labels = [base_config.id2label[i] for i in range(base_config.num_labels)] if is_classifier else None
    if base_labels == list(label_names):
        return Classifier.from_pretrained(name, config=config, **fp32)  # the same task: its head is kept
    dropped = f"; {name}'s own head ({', '.join(base_labels)}) is dropped." if base_labels else f" on {name}."
    log(f"A classification head for {len(label_names)} labels ({', '.join(label_names)}) is initialised "
        f"afresh{dropped}")
    if not base_labels:  # an encoder (e.g. BertForMaskedLM): transformers loads its body under a new head
        return Classifier.from_pretrained(name, config=config, **fp32)
    base = Classifier.from_pretrained(name, **fp32)  # a classifier for other labels: only its body is kept
    model = Classifier.from_config(config, **fp32)
    body = getattr(base, base.base_model_prefix).state_dict()
    getattr(model, model.base_model_prefix).load_state_dict(body)
    return model


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
        decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.gamma)
        scheduler = {"scheduler": decay, "interval": "epoch"}
    elif cfg.scheduler == "linear":
        factor = linear_schedule(module.trainer, cfg.warmup_ratio)
        linear = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        scheduler = {"scheduler": linear, "interval": "step"}
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
    # 3% margin: the last validation
    budget = 0.97 * timer._duration if timer is not None and timer._duration else None

    def factor(step: int) -> float:
        done = (step + 1) / total
        if budget:
            done = max(done, (timer.time_elapsed("train") or 0.0) / budget)
        done = min(done, 1.0)
        if done < warmup_ratio:
            return done / warmup_ratio
        return max(0.0, (1.0 - done) / max(1e-9, 1.0 - warmup_ratio))

    return factor


class ClassifierModule(L.LightningModule):
    """A Hugging Face sequence classifier in training: loss, accuracy and macro-F1 for any label count."""

    def __init__(self, model, tokenizer, cfg):
        super().__init__()
        self.model, self.cfg = model.train(), cfg  # from_pretrained returns eval mode: dropout would be off
        # Plain values only, so the checkpoint loads with torch.load(weights_only=True).
        self.save_hyperparameters({k: v for k, v in vars(cfg).items()})
        self._extras = loading.checkpoint_extras(model, tokenizer)
        n = model.config.num_labels
        self.train_acc, self.val_acc, self.test_acc = (MulticlassAccuracy(n, average="micro")
                                                       for _ in range(3))
        self.val_f1, self.test_f1 = (MulticlassF1Score(n, average="macro") for _ in range(2))

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
        self.log(f"{stage}_n", float(bs), reduce_fx="sum", sync_dist=True)  # reviews scored, over all devices

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
