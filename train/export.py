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
from pathlib import Path

import torch
import yaml

from nsmc import loading
from nsmc.cli import command_errors
from nsmc.corpus import LABELS

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _files_table(metrics: dict, settings: dict) -> str:
    rows = metrics.get("data") or {}
    if not rows:  # runs from before the file list was recorded
        carved = settings.get("val_size", "?")
        return f"validation: {carved} rows carved from the train split; test: the test file"
    lines = ["| split | file | rows |", "| --- | --- | --- |"]
    lines += [f"| {split} | `{r['file']}` | {r['rows']:,} |" for split, r in rows.items()]
    return "\n".join(lines)


def model_card(out: Path, settings: dict, metrics: dict, n_params: int, labels: list[str]) -> str:
    def pct(key):
        return f"{100 * metrics[key]:.2f}%" if key in metrics else "not measured"

    nsmc = tuple(labels) == LABELS and not settings.get("train_file")
    base = settings.get("pretrained_model_name", "?")
    if nsmc:
        title, tags = "Korean movie-review sentiment (NSMC)", "[sentiment-analysis, nsmc, korean, bert]"
        about = (f"fine-tuned on the Naver Sentiment Movie\nCorpus (NSMC) from `{base}`. "
                 f"Labels: `negative` (ratings 1-4), `positive` (9-10).")
    else:
        title = f"Korean text classification ({len(labels)} labels)"
        tags = "[text-classification, korean, bert]"
        start = "random weights in the shape of " if settings.get("from_scratch") else ""
        about = (f"trained on `{settings.get('train_file', '?')}` from {start}`{base}`.\n"
                 f"Labels (in class order): {', '.join(f'`{n}`' for n in labels)}.")
    card = f"""---
language: ko
license: mit
library_name: transformers
pipeline_tag: text-classification
tags: {tags}
---
# {out.parent.name if out.name == "export" else out.name}: {title}

A BERT sequence classifier ({n_params / 1e6:.1f}M parameters) {about}

| split | accuracy | macro-F1 |
| --- | --- | --- |
| validation | {pct('val_acc')} | {pct('val_f1')} |
| test (evaluated once) | {pct('test_acc')} | {pct('test_f1')} |

Data:

{_files_table(metrics, settings)}

Recipe: `train_config.yaml` beside this file holds every setting of the run
(`python -m train train_config.yaml` reproduces it); `metrics.json` holds the numbers above.
"""
    if nsmc:
        card += """
Intended use: sentiment of short Korean movie reviews (NSMC's reviews are under 140 characters), as a demo or
a baseline. Limits: trained on movie reviews only, so other domains (products, news, politics) and long texts
are out of distribution; neutral reviews (ratings 5-8) were excluded from training, so mixed opinions get
forced into one of two classes; sarcasm and slang drift since the reviews were written are known weak points.
"""
    return card


def label_names(config) -> list[str]:
    return [config.id2label[i] for i in range(config.num_labels)]


def export(ckpt_path: str | Path, out_dir: str | Path, dtype: str = "float32", metrics: dict | None = None,
           base_model: str | None = None, examples: list[str] | None = None) -> Path:
    """The checkpoint as a model folder. `examples`: a few texts of the data for the app (examples.json)."""
    out = Path(out_dir)
    ckpt = loading.read_checkpoint(ckpt_path)
    settings = loading.hparams(ckpt)
    model, tokenizer = loading.load_checkpoint(ckpt_path, base_model=base_model)
    labels = label_names(model.config)
    if all(n.startswith("LABEL_") for n in labels) and len(labels) == len(LABELS):
        labels = list(LABELS)  # a checkpoint from before the label names were set at training time
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {name: i for i, name in enumerate(labels)}
    out.mkdir(parents=True, exist_ok=True)
    model.to(DTYPES[dtype]).save_pretrained(out)
    # Stored half-size, loaded as float32: transformers loads config.dtype, and float16 on CPU is slow.
    model.config.dtype = "float32"
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if settings:
        recipe = yaml.safe_dump(settings, sort_keys=False, allow_unicode=True)
        (out / "train_config.yaml").write_text(recipe, encoding="utf-8")
    metrics = metrics if metrics is not None else {}
    def write_json(name: str, value) -> None:
        (out / name).write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    write_json("metrics.json", metrics)
    if examples:
        write_json("examples.json", examples)
    n_params = sum(p.numel() for p in model.parameters())
    (out / "README.md").write_text(model_card(out, settings, metrics, n_params, labels), encoding="utf-8")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt")
    parser.add_argument("out_dir")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--base-model", help="only for checkpoints that carry no config and tokenizer")
    parser.add_argument("--metrics", help="a metrics.json to copy into the export")
    args = parser.parse_args(argv)
    with command_errors() as outputs:
        outputs.watch(args.out_dir)
        metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else None
        out = export(args.ckpt, args.out_dir, args.dtype, metrics, args.base_model)
    print(f"exported {args.ckpt} -> {out}")


if __name__ == "__main__":
    main()
