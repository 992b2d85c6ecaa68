"""Fine-tune a BERT classifier on NSMC and export it as a Hugging Face model folder.

Usage:
    python -m train configs/smoke.yaml                     # a 1-minute CPU check on a tiny model
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
import sys
import time

from nsmc.errors import UserError


def run(cfg) -> dict:
    import lightning as L

    from nsmc.loading import load_tokenizer
    from train.config import to_yaml
    from train.data import ClassificationDataModule
    from train.export import export
    from train.module import ClassifierModule, build_model
    from train.trainer import best_checkpoint, build_trainer, check_output_dir, checkpoint_bytes, resume_path

    # 1. Settings and seed; fail early if the output cannot be written.
    check_output_dir(cfg.out_dir)
    L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resume_path(cfg)
    (cfg.out_dir / "train_config.yaml").write_text(to_yaml(cfg), encoding="utf-8")

    # 2. Data (NSMC or your files -> cached encoding -> train/val split -> padded batches); its labels
    #    shape the model.
    tokenizer = load_tokenizer(cfg.pretrained_model_name)
    datamodule = ClassificationDataModule(cfg, tokenizer, fixed_length=cfg.accelerator == "tpu")

    # 3. Model (a Hub name needs the internet once; a local folder never does).
    model = build_model(cfg, datamodule.label_names)
    check_output_dir(cfg.out_dir, checkpoint_bytes(model))

    # 4. Fit, keeping the best checkpoint by validation accuracy or macro-F1 (and the last, for --resume).
    module = ClassifierModule(model, tokenizer, cfg)
    trainer = build_trainer(cfg, monitor=cfg.monitor, mode="max", max_epochs=cfg.epochs)
    start = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if cfg.test_mode:
        return {}
    fit_seconds = time.time() - start

    # 5. Evaluate the best checkpoint: validation again (for its F1), then the test split, once.
    best = best_checkpoint(trainer, cfg.checkpoint_dir)
    metrics = {}
    for stage in (trainer.validate, trainer.test) if cfg.run_test else (trainer.validate,):
        for result in stage(module, datamodule=datamodule, ckpt_path=best, verbose=False):
            metrics.update({k: round(float(v), 5) for k, v in result.items()})
    metrics.update(best_checkpoint=best, global_step=trainer.global_step, fit_seconds=round(fit_seconds, 1),
                   device=device_name(trainer), precision=str(trainer.precision), data=datamodule.rows)

    # 6. Export the best checkpoint as a Hugging Face model folder.
    if trainer.is_global_zero:
        export(best, cfg.export_dir, cfg.export_dtype, metrics, examples=datamodule.examples())
        (cfg.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"test accuracy {metrics.get('test_acc', float('nan')):.4f}; model exported to {cfg.export_dir}")
    return metrics


def device_name(trainer) -> str:
    import platform

    import torch

    if trainer.accelerator.__class__.__name__.lower().startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU x{torch.get_num_threads()} threads"


def main(argv=None) -> None:
    from train.config import TrainConfig, parse

    try:
        cfg = parse(TrainConfig, argv, description=__doc__)
        run(cfg)
    except UserError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted: `--resume` continues from the last checkpoint")


if __name__ == "__main__":
    main()
