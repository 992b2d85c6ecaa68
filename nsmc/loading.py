"""Load tokenizers, configs and classifiers by Hub name, exported folder or Lightning checkpoint.

Checkpoints are read with `torch.load(weights_only=True)`, so one handed in by a stranger cannot run
code. Ours carry the HF config and tokenizer files (as text), so they serve without the base model.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from nsmc.errors import UserError

CHECKPOINT_KEY = "nsmc"  # our extras inside the checkpoint dict
PREFIX = "model."  # the LightningModule holds the HF model as `self.model`
CKPT_FIX = ("Pass the .ckpt that `python -m train` wrote (e.g. RUN_DIR/checkpoints/best.ckpt), "
            "or an exported model directory.")


def _offline_hint(name: str, what: str, err: Exception) -> UserError:
    return UserError(
        f"Could not load the {what} '{name}': it is not a local folder, and the Hugging Face Hub "
        f"could not be reached or does not have it ({type(err).__name__}). Either connect to the internet "
        f"(first use downloads it), download it elsewhere (`hf download {name} --local-dir DIR`) and pass "
        f"that DIR instead, or pass any local model folder, e.g. one written by `python -m train.pretrain`."
    )


def load_tokenizer(name_or_dir: str | os.PathLike):
    """The fast tokenizer. `do_lower_case=False`: lower-casing also strips accents, which decomposes
    Hangul syllables into jamo the vocabulary does not have."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name_or_dir), do_lower_case=False)
    except (OSError, ValueError) as e:
        if Path(name_or_dir).is_dir():
            raise UserError(f"{name_or_dir} has no usable tokenizer files (tokenizer.json or vocab.txt): "
                            f"{e}") from None
        raise _offline_hint(str(name_or_dir), "tokenizer", e) from None


def load_config(name_or_dir: str, **kwargs):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(name_or_dir), **kwargs)
    except (OSError, ValueError) as e:
        if Path(name_or_dir).is_dir():
            raise UserError(f"{name_or_dir} has no usable config.json: {e}") from None
        raise _offline_hint(str(name_or_dir), "model config", e) from None


def load_classifier(path: str | os.PathLike, base_model: str | None = None, dtype=torch.float32):
    """(model, tokenizer) in eval mode from an exported folder or a Lightning `.ckpt`."""
    from transformers import AutoModelForSequenceClassification

    path = Path(path)
    if path.suffix == ".ckpt" or path.is_file():
        return load_checkpoint(path, base_model=base_model, dtype=dtype)
    if not (path / "config.json").is_file():
        raise UserError(
            f"No model at {path}: expected an exported model folder (config.json, model.safetensors, "
            f"tokenizer files) or a .ckpt file. Train one with `python -m train`, or export a checkpoint "
            f"with `python -m train.export CKPT OUT`."
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"Could not load the model in {path} (missing or corrupt weights?): "
                        f"{str(e)[:300]}") from None
    return model.eval(), load_tokenizer(path)


# --- Lightning checkpoints, without Lightning and without pickle ------------------------------


def checkpoint_extras(model, tokenizer) -> dict:
    """What the LightningModule adds to each checkpoint (plain strings and dicts only)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.read_text(encoding="utf-8") for p in Path(tmp).iterdir() if p.is_file()}
    return {"hf_config": model.config.to_dict(), "tokenizer_files": files}


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint dict, loaded safely, or a UserError that says what is wrong and what to do."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Checkpoint not found: {path}. {CKPT_FIX}")

    def corrupt(detail: str) -> UserError:
        return UserError(
            f"{path} is not a readable checkpoint (corrupt or truncated: {detail}). Re-export or "
            f"re-train it; `python -m train --resume` continues from the last good checkpoint. {CKPT_FIX}"
        )

    if not zipfile.is_zipfile(path):  # torch.save writes zip archives: anything else is damage
        raise corrupt("not a zip archive")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).splitlines() or ["no detail"]
        # The line naming the refused class, not torch's advice to retry with weights_only=False.
        detail = next((line.strip() for line in lines if "GLOBAL" in line), lines[0])[:200]
        raise UserError(
            f"Refused to load {path}: it holds Python objects that only an unsafe pickle load could build "
            f"({detail}). Only checkpoints with plain weights and settings are loaded. {CKPT_FIX}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError) as e:
        first_line = str(e).splitlines()[0][:200] if str(e) else "no detail"
        raise corrupt(f"{type(e).__name__}: {first_line}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise UserError(f"{path} is not a Lightning checkpoint (no 'state_dict' in it). {CKPT_FIX}")
    return ckpt


def classifier_state_dict(ckpt: dict) -> dict[str, torch.Tensor]:
    """The HF model's weights: `model.` stripped from the front only (the tutorial's
    `str.replace("model.", "")` also mangled keys with `model.` in the middle)."""
    return {k[len(PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}


def hparams(ckpt: dict) -> dict:
    return dict(ckpt.get("hyper_parameters") or {})


def load_checkpoint(path: str | Path, base_model: str | None = None, dtype=torch.float32):
    """(model, tokenizer) from a checkpoint; config and tokenizer from the checkpoint itself, or
    from `base_model` for checkpoints that do not carry them."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    ckpt = read_checkpoint(path)
    ours = ckpt.get(CHECKPOINT_KEY) or {}
    if ours.get("hf_config"):
        config_dict = dict(ours["hf_config"])
        config = AutoConfig.for_model(config_dict.pop("model_type", "bert"), **config_dict)
    elif base_model:
        config = AutoConfig.from_pretrained(base_model, num_labels=2)
    else:
        raise UserError(f"{path} carries no model config; pass the base model it was trained from "
                        "(--base-model NAME_OR_DIR).")
    model = AutoModelForSequenceClassification.from_config(config)
    missing, unexpected = model.load_state_dict(classifier_state_dict(ckpt), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise UserError(
            f"{path} does not match the model architecture: {len(missing)} missing weights "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). "
            "Is the base model right?"
        )
    if ours.get("tokenizer_files"):
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in ours["tokenizer_files"].items():
                (Path(tmp) / Path(name).name).write_text(text, encoding="utf-8")
            tokenizer = load_tokenizer(tmp)
    elif base_model:
        tokenizer = load_tokenizer(base_model)
    else:
        raise UserError(f"{path} carries no tokenizer; pass the base model it was trained from "
                        "(--base-model NAME_OR_DIR).")
    return model.to(dtype).eval(), tokenizer
