"""Turn a training checkpoint into a servable Hugging Face model folder.

Usage:
    python -m train.export CKPT OUT_DIR [--dtype float16] [--base-model NAME_OR_DIR]

OUT_DIR receives config.json (readable id2label), model.safetensors, the tokenizer files,
train_config.yaml (the run's settings), metrics.json and a model card (README.md). It loads with
`transformers.pipeline("text-classification", model=OUT_DIR)` and with `python app.py --model OUT_DIR`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml

from nsmc import loading
from nsmc.corpus import LABELS
from nsmc.errors import UserError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def model_card(out: Path, settings: dict, metrics: dict, n_params: int) -> str:
    def pct(key):
        return f"{100 * metrics[key]:.2f}%" if key in metrics else "not measured"

    return f"""---
language: ko
license: mit
library_name: transformers
pipeline_tag: text-classification
tags: [sentiment-analysis, nsmc, korean, bert]
---
# {out.name}: Korean movie-review sentiment (NSMC)

A BERT sequence classifier ({n_params / 1e6:.1f}M parameters) fine-tuned on the Naver Sentiment Movie
Corpus (NSMC) from `{settings.get('pretrained_model_name', '?')}`. Labels: `negative` (ratings 1-4), `positive` (9-10).

| split | accuracy | F1 |
| --- | --- | --- |
| validation ({settings.get('val_size', '?')} reviews carved from the train split) | {pct('val_acc')} | {pct('val_f1')} |
| test (50,000 reviews, evaluated once) | {pct('test_acc')} | {pct('test_f1')} |

Recipe: `train_config.yaml` beside this file holds every setting of the run (`python -m train train_config.yaml`
reproduces it); `metrics.json` holds the numbers above.

Intended use: sentiment of short Korean movie reviews (NSMC's reviews are under 140 characters), as a demo or a
baseline. Limits: trained on movie reviews only, so other domains (products, news, politics) and long texts are
out of distribution; neutral reviews (ratings 5-8) were excluded from training, so mixed opinions get forced into
one of two classes; sarcasm and slang drift since the reviews were written are known weak points.
"""


def export(ckpt_path: str | Path, out_dir: str | Path, dtype: str = "float32", metrics: dict | None = None,
           base_model: str | None = None) -> Path:
    out = Path(out_dir)
    ckpt = loading.read_checkpoint(ckpt_path)
    settings = loading.hparams(ckpt)
    model, tokenizer = loading.load_checkpoint(ckpt_path, base_model=base_model)
    model.config.id2label = dict(enumerate(LABELS))
    model.config.label2id = {name: i for i, name in enumerate(LABELS)}
    out.mkdir(parents=True, exist_ok=True)
    model.to(DTYPES[dtype]).save_pretrained(out)
    tokenizer.save_pretrained(out)
    if settings:
        (out / "train_config.yaml").write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True), encoding="utf-8")
    metrics = metrics if metrics is not None else {}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    n_params = sum(p.numel() for p in model.parameters())
    (out / "README.md").write_text(model_card(out, settings, metrics, n_params), encoding="utf-8")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt")
    parser.add_argument("out_dir")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--base-model", help="only for checkpoints that carry no config and tokenizer")
    parser.add_argument("--metrics", help="a metrics.json to copy into the export")
    args = parser.parse_args(argv)
    try:
        metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else None
        out = export(args.ckpt, args.out_dir, args.dtype, metrics, args.base_model)
    except UserError as e:
        sys.exit(f"error: {e}")
    print(f"exported {args.ckpt} -> {out}")


if __name__ == "__main__":
    main()
