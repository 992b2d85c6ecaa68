"""Load tokenizers and classifiers by name, folder or checkpoint, with clear errors offline."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nsmc.errors import UserError


def _offline_hint(name: str, what: str, err: Exception) -> UserError:
    return UserError(
        f"Could not load the {what} '{name}': it is not a local folder, and the Hugging Face Hub "
        f"could not be reached or does not have it ({type(err).__name__}). Either connect to the internet "
        f"(first use downloads it), download it elsewhere (`hf download {name} --local-dir DIR`) and pass "
        f"that DIR instead, or pass any local model folder, e.g. one written by `python -m train.pretrain`."
    )


def load_tokenizer(name_or_dir: str | os.PathLike):
    """The model's fast tokenizer. `do_lower_case=False` matters for Korean: lower-casing turns on
    accent stripping, which decomposes Hangul syllables into jamo the vocabulary does not have."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(name_or_dir), do_lower_case=False)
    except (OSError, ValueError) as e:
        if Path(name_or_dir).is_dir():
            raise UserError(f"{name_or_dir} has no usable tokenizer files (tokenizer.json or vocab.txt): {e}") from None
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

    from nsmc import checkpoint

    path = Path(path)
    if path.suffix == ".ckpt" or path.is_file():
        return checkpoint.load(path, base_model=base_model, dtype=dtype)
    if not (path / "config.json").is_file():
        raise UserError(
            f"No model at {path}: expected an exported model folder (config.json, model.safetensors, "
            f"tokenizer files) or a .ckpt file. Train one with `python -m train`, or export a checkpoint "
            f"with `python -m train.export CKPT OUT`."
        )
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"Could not load the model in {path} (missing or corrupt weights?): {str(e)[:300]}") from None
    return model.eval(), load_tokenizer(path)
