"""Lightning checkpoints without Lightning, and without pickle.

A training checkpoint of ours carries, next to the weights, the model's Hugging Face config and
its tokenizer files (as text), so it is self-contained: serving or exporting needs no base model
and no network. Every load uses `torch.load(weights_only=True)`, which refuses to build arbitrary
Python objects, so a checkpoint handed in by a stranger cannot run code.
"""

from __future__ import annotations

import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from nsmc.errors import UserError

KEY = "nsmc"  # our extras inside the checkpoint dict
PREFIX = "model."  # the LightningModule holds the HF model as `self.model`


def extras(model, tokenizer) -> dict:
    """What the LightningModule adds to each checkpoint (plain strings and dicts only)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.read_text(encoding="utf-8") for p in Path(tmp).iterdir() if p.is_file()}
    return {"hf_config": model.config.to_dict(), "tokenizer_files": files}


def read(path: str | Path) -> dict:
    """Load a checkpoint dict safely, with a message that says what is wrong and what to do."""
    path = Path(path)
    fix = "Pass the .ckpt that `python -m train` wrote (e.g. RUN_DIR/checkpoints/best.ckpt), or an exported model directory."
    if not path.is_file():
        raise UserError(f"Checkpoint not found: {path}. {fix}")

    def corrupt(detail: str) -> UserError:
        return UserError(
            f"{path} is not a readable checkpoint (corrupt or truncated: {detail}). Re-export or re-train it; "
            f"`python -m train --resume` continues from the last good checkpoint. {fix}"
        )

    if not zipfile.is_zipfile(path):  # torch.save writes zip archives (since torch 1.6): anything else is damage
        raise corrupt("not a zip archive")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).splitlines() or ["no detail"]
        # The line naming the refused class, not torch's advice to retry with weights_only=False.
        detail = next((line.strip() for line in lines if "GLOBAL" in line), lines[0])[:200]
        raise UserError(
            f"Refused to load {path}: it holds Python objects that only an unsafe pickle load could build "
            f"({detail}). Only checkpoints with plain weights and settings are loaded. {fix}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError) as e:
        raise corrupt(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else 'no detail'}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(f"{path} is not a Lightning checkpoint (no 'state_dict' in it). {fix}")
    return ckpt


def classifier_state_dict(ckpt: dict) -> dict[str, torch.Tensor]:
    """The HF model's weights: the `model.` prefix stripped from the front only (the tutorial's
    `str.replace("model.", "")` also mangled any key with `model.` in the middle)."""
    return {k[len(PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}


def load(path: str | Path, base_model: str | None = None, dtype=torch.float32):
    """(model, tokenizer) from a checkpoint; config and tokenizer from the checkpoint itself, or
    from `base_model` (a name or folder) for checkpoints that do not carry them."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from nsmc.loading import load_tokenizer

    ckpt = read(path)
    ours = ckpt.get(KEY) or {}
    if ours.get("hf_config"):
        config_dict = dict(ours["hf_config"])
        model_type = config_dict.pop("model_type", "bert")
        config = AutoConfig.for_model(model_type, **config_dict)
    elif base_model:
        config = AutoConfig.from_pretrained(base_model, num_labels=2)
    else:
        raise UserError(f"{path} carries no model config; pass the base model it was trained from (--base-model NAME_OR_DIR).")
    model = AutoModelForSequenceClassification.from_config(config)
    missing, unexpected = model.load_state_dict(classifier_state_dict(ckpt), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise UserError(
            f"{path} does not match the model architecture: {len(missing)} missing weights "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). Is the base model right?"
        )
    if ours.get("tokenizer_files"):
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in ours["tokenizer_files"].items():
                (Path(tmp) / Path(name).name).write_text(text, encoding="utf-8")
            tokenizer = load_tokenizer(tmp)
    elif base_model:
        tokenizer = load_tokenizer(base_model)
    else:
        raise UserError(f"{path} carries no tokenizer; pass the base model it was trained from (--base-model NAME_OR_DIR).")
    return model.to(dtype).eval(), tokenizer


def hparams(ckpt: dict) -> dict:
    return dict(ckpt.get("hyper_parameters") or {})


