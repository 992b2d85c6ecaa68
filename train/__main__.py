"""Fine-tune a BERT classifier on NSMC and export it as a Hugging Face model folder.

Usage:
    python -m train.pretrain configs/pretrain-smoke.yaml   # first: the smoke preset's tiny base model
    python -m train configs/smoke.yaml                     # a 1-minute CPU check on that tiny model
    python -m train configs/kcbert.yaml                    # the tutorial's run: kcbert-base, 3 epochs
    python -m train configs/kcbert.yaml --corpus_dir ../shared/data/nsmc --batch_size 64
    python -m train configs/kcbert.yaml --resume           # continue an interrupted run
    python -m train --train_file F.csv --text_column_names C --label_column_name L   # your own data (README)
    python -m train --help                                 # every setting

Writes to downstream_model_dir: checkpoints/{best,last}.ckpt, logs/ (CSV; tensorboard/ when installed),
export/ (the servable model: config.json, model.safetensors, tokenizer, train_config.yaml, metrics.json).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from nsmc.errors import UserError


def run(cfg) -> dict:
    check_base_model(cfg.pretrained_model_name)  # before the imports: a mistake should fail in a second

    import lightning as L

    from nsmc.loading import load_config, load_tokenizer
    from train.config import to_yaml
    from train.data import ClassificationDataModule
    from train.export import export
    from train.module import ClassifierModule, build_model
    from train.trainer import best_checkpoint, build_trainer, check_output_dir, checkpoint_bytes, resume_path

    # 1. Settings and seed; fail early if the output cannot be written.
    check_output_dir(cfg.out_dir)
    L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resume_path(cfg)

    # 2. Data (NSMC or your files -> cached encoding -> train/val split -> padded batches); its labels
    #    shape the model.
    tokenizer = load_tokenizer(cfg.pretrained_model_name)
    fit_max_seq_length(cfg, load_config(cfg.pretrained_model_name))
    (cfg.out_dir / "train_config.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    datamodule = ClassificationDataModule(cfg, tokenizer, fixed_length=cfg.accelerator == "tpu")

    # 3. Model (a Hub name needs the internet once; a local folder never does).
    model = build_model(cfg, datamodule.label_names)
    check_output_dir(cfg.out_dir, checkpoint_bytes(model))

    # 4. Fit, keeping the best checkpoint by validation accuracy or macro-F1 (and the last, for --resume).
    #    Lightning loads every checkpoint with weights_only=True: no pickle from a run folder someone sent.
    module = ClassifierModule(model, tokenizer, cfg)
    trainer = build_trainer(cfg, monitor=cfg.monitor, mode="max", max_epochs=cfg.epochs)
    start = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if cfg.test_mode:
        return {}
    fit_seconds = time.time() - start

    # 5. Evaluate the best checkpoint: validation again (for its F1), then the test split, once.
    best = best_checkpoint(trainer, cfg.checkpoint_dir)
    metrics = {}
    for stage in (trainer.validate, trainer.test) if cfg.run_test else (trainer.validate,):
        for result in stage(module, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True):
            metrics.update({k: int(v) if k.endswith("_n") else round(float(v), 5) for k, v in result.items()})
    metrics.update(best_checkpoint=best, global_step=trainer.global_step, fit_seconds=round(fit_seconds, 1),
                   device=device_name(trainer), precision=str(trainer.precision), data=datamodule.rows)

    # 6. Export the best checkpoint as a Hugging Face model folder.
    if trainer.is_global_zero:
        export(best, cfg.export_dir, cfg.export_dtype, metrics, examples=datamodule.examples())
        (cfg.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(summary(metrics, cfg.export_dir))
    return metrics


def check_base_model(name: str) -> None:
    """A local folder that is not there fails here, in words, instead of as a failed Hub download; a
    folder a pre-training preset writes gets the command that writes it."""
    path = Path(name).expanduser()
    if path.exists() or not (name.startswith((".", "/", "~")) or name.count("/") > 1):
        return  # a folder, or a Hub name such as beomi/kcbert-base
    for preset in sorted((Path(__file__).resolve().parents[1] / "configs").glob("pretrain-*.yaml")):
        output_dir = (yaml.safe_load(preset.read_text(encoding="utf-8")) or {}).get("output_dir")
        if output_dir and path == Path(output_dir) / "export":
            raise UserError(f"--pretrained_model_name {name} is not there yet: `python -m train.pretrain "
                            f"configs/{preset.name}` writes it. Run that first.")
    raise UserError(f"--pretrained_model_name {name}: no such folder. Pass a folder with config.json and "
                    "tokenizer files (e.g. OUTPUT_DIR/export of `python -m train.pretrain`), or a Hub name "
                    "such as beomi/kcbert-base.")


def fit_max_seq_length(cfg, config) -> None:
    """Past the model's position embeddings, transformers fails mid-training: cut reviews there instead."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit and cfg.max_seq_length > limit:
        print(f"note: --max_seq_length {cfg.max_seq_length} is more than {cfg.pretrained_model_name} has "
              f"position embeddings for; using {limit}.")
        cfg.max_seq_length = limit


def summary(metrics: dict, export_dir) -> str:
    """What was done: the best checkpoint's scores, on how many reviews, and where the model went."""
    parts = [f"best checkpoint: validation accuracy {metrics['val_acc']:.4f} on {metrics['val_n']:,} reviews"]
    if "test_acc" in metrics:
        parts.append(f"test accuracy {metrics['test_acc']:.4f} on {metrics['test_n']:,} reviews")
    else:
        parts.append("test split not scored (--run_test false)")
    return "; ".join(parts) + f"; model exported to {export_dir}"


def device_name(trainer) -> str:
    import platform

    import torch

    if trainer.accelerator.__class__.__name__.lower().startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU x{torch.get_num_threads()} threads"


def main(argv=None) -> None:
    from nsmc.cli import command_errors
    from train.config import TrainConfig, parse

    with command_errors() as outputs:
        cfg = parse(TrainConfig, argv, description=__doc__)
        outputs.watch(cfg.out_dir)
        run(cfg)


if __name__ == "__main__":
    main()
