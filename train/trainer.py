"""A Lightning Trainer for our runs: hardware and precision choice, checkpoints, loggers, checks."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, EMAWeightAveraging, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.plugins import TorchCheckpointIO

from nsmc.errors import UserError
from train.config import lightning_devices, validation_interval


def resolve_precision(cfg) -> str:
    """bf16 mixed precision where the GPU has it; bf16-true on TPU (XLA refuses bf16-mixed)."""
    if cfg.fp16:
        return "16-mixed"
    if cfg.precision != "auto":
        return cfg.precision
    if cfg.accelerator == "tpu":
        return "bf16-true"
    if cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def check_output_dir(path: str | Path, need_bytes: int = 0) -> None:
    """Fail before training, not after hours, when results could not be saved."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UserError(f"Cannot write to the output folder {path} ({e.strerror or e}). "
                        "Choose another output folder.") from None
    free = shutil.disk_usage(path).free
    if need_bytes and free < need_bytes:
        raise UserError(
            f"Only {free / 2**30:.1f} GiB free under {path}; checkpoints and the export of this model "
            f"need about {need_bytes / 2**30:.1f} GiB. Free some space or choose another output folder."
        )


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """best + last checkpoints (weights and two AdamW moments each) plus the export, with margin."""
    n = sum(p.numel() for p in model.parameters())
    return int(n * 4 * (3 * 2 + 1) * 1.2)


UMASK = os.umask(0o022)
os.umask(UMASK)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target, synced, then renamed over it, so a
    kill or a full disk mid-write leaves the previous checkpoint intact.

    Lightning's own save stages the file in the system temp folder and then *moves* it (fsspec):
    when that folder is another filesystem (a tmpfs /tmp, a mounted Google Drive) the move is a
    copy, and a kill during the copy leaves a truncated last.ckpt where the good one was."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if "://" in str(path):  # s3://, gs://...: object stores replace objects whole anyway
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())  # the rename must not reach the disk before the data does
            os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; keep what a plain open() would give
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def remove_stale_temporaries(folder: Path) -> None:
    """Half-written checkpoints of a killed run (`.last.ckpt.XXXX.tmp`): gigabytes, never read."""
    for stale in Path(folder).glob(".*.ckpt.*.tmp"):
        stale.unlink(missing_ok=True)


class SaveLast(Checkpoint):
    """checkpoints/last.ckpt, what --resume continues from: after every validation and, with
    `every_n_steps`, every N optimizer steps, so a kill loses at most N steps.

    Not ModelCheckpoint(save_last=True): in Lightning 2.6 that refreshes last.ckpt only when it also
    saved a top-k checkpoint, i.e. when validation improved, so a run killed after a non-improving
    epoch resumed from before that epoch. Being a Checkpoint, Lightning runs it after the other
    callbacks: listed after the best-checkpoint callback, last.ckpt carries the latest best score."""

    def __init__(self, path: Path, every_n_steps: int = 0):
        self.path, self.every_n_steps, self._saved_step = Path(path), every_n_steps, -1

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: --resume needs it
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, *args) -> None:
        step = trainer.global_step
        if (self.every_n_steps and step % self.every_n_steps == 0 and step != self._saved_step
                and not trainer.fast_dev_run):
            self._save(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking and not trainer.fast_dev_run:
            self._save(trainer)


def build_trainer(cfg, monitor: str, mode: str, max_epochs: int, callbacks=()) -> L.Trainer:
    out = cfg.out_dir
    remove_stale_temporaries(out / "checkpoints")
    checkpoints = [ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor, mode=mode,
                                   save_top_k=1, enable_version_counter=False),
                   SaveLast(out / "checkpoints" / "last.ckpt", cfg.checkpoint_every_n_steps)]
    averaging = [EMAWeightAveraging(decay=cfg.ema_decay)] if cfg.ema_decay else []
    loggers = [L.pytorch.loggers.CSVLogger(out, name="logs")]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(L.pytorch.loggers.TensorBoardLogger(out, name="tensorboard"))
    try:
        return L.Trainer(
            accelerator=cfg.accelerator, devices=lightning_devices(cfg.devices), num_nodes=cfg.num_nodes,
            strategy=cfg.strategy, precision=resolve_precision(cfg), max_epochs=max_epochs,
            max_steps=cfg.max_steps, max_time=cfg.max_time, gradient_clip_val=cfg.gradient_clip_val or None,
            val_check_interval=validation_interval(cfg.val_check_interval),
            log_every_n_steps=cfg.log_every_n_steps,
            callbacks=[*checkpoints, LearningRateMonitor("step"), *averaging, *callbacks],
            logger=loggers, default_root_dir=out, fast_dev_run=cfg.test_mode, deterministic=False,
            num_sanity_val_steps=0 if cfg.resume else 2,
            # XLA saves through its own CheckpointIO (tensors must leave the TPU first).
            plugins=[] if cfg.accelerator == "tpu" else [AtomicCheckpointIO()],
        )
    except (ValueError, RuntimeError, TypeError) as e:  # MisconfigurationException is a ValueError
        raise UserError(
            f"Lightning cannot use accelerator={cfg.accelerator!r}, devices={cfg.devices!r}, "
            f"num_nodes={cfg.num_nodes}, strategy={cfg.strategy!r}: {e}"
        ) from None


def resume_path(cfg) -> str | None:
    if not cfg.resume:
        return None
    from nsmc import loading

    last = cfg.checkpoint_dir / "last.ckpt"
    if not last.is_file():
        raise UserError(f"--resume: no {last} to resume from. "
                        "Run once without --resume first (same --downstream_model_dir).")
    try:  # a damaged file (copied by hand, an older version's non-atomic save) fails here, in words
        loading.read_checkpoint(last)
    except UserError as e:
        raise UserError(f"--resume: {e} Delete it to start over, "
                        "or copy checkpoints/best.ckpt over it to resume from there.") from None
    return str(last)


def best_checkpoint(trainer: L.Trainer, checkpoint_dir: Path) -> str:
    """The best checkpoint by the monitored metric; if the run stopped (max_steps, max_time) before
    any validation, what it trained, saved now as last.ckpt."""
    best = trainer.checkpoint_callback.best_model_path
    if not best:
        best = str(Path(checkpoint_dir) / "last.ckpt")
        trainer.save_checkpoint(best, weights_only=False)
    return best
