"""app.py's command line: its options with their environment defaults, and the model loaded with a
message instead of a traceback when the path or login is wrong."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nsmc.api import parse_login
from nsmc.cli import command_errors
from nsmc.errors import UserError
from nsmc.inference import TextClassifier
from nsmc.runtime import DEFAULT_RUNTIME, HELP, RUNTIMES


def parse_args(argv: list[str], description: str = "") -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.environ.get("MODEL_DIR"),
                   help="exported model folder or Lightning .ckpt (default: $MODEL_DIR, else "
                        "models/nsmc-small)")
    p.add_argument("--base-model",
                   help="base model name or folder, for a .ckpt that carries no config/tokenizer")
    p.add_argument("--runtime", choices=RUNTIMES, default=os.environ.get("NSMC_RUNTIME", DEFAULT_RUNTIME),
                   help=f"{HELP} (default: $NSMC_RUNTIME, else {DEFAULT_RUNTIME})")
    p.add_argument("--title",
                   help="the page's title (default: NSMC's for an NSMC model, else the model card's)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 for the local network)")
    p.add_argument("--port", type=int, help="port (default 7860, or the next free one)")
    p.add_argument("--share", action="store_true",
                   help="also create a public *.gradio.live link (needs internet)")
    p.add_argument("--auth", default=os.environ.get("GRADIO_AUTH"),
                   help="require a login, USER:PASSWORD (default: $GRADIO_AUTH)")
    args = p.parse_args(argv)
    with command_errors("app.py"):
        args.auth = parse_login(args.auth)
    return args


def load(args: argparse.Namespace, default_model: Path) -> TextClassifier:
    """The model to serve (`default_model` unless told otherwise), or exit with what to do."""
    with command_errors("app.py"):
        return _load(args, default_model)


def _load(args: argparse.Namespace, default_model: Path) -> TextClassifier:
    if args.model is None and not default_model.exists():
        raise UserError("no model to serve yet: the default models/nsmc-small/ does not exist.\n"
                        "  Train and export one:  python -m train   (README: it writes the exported folder)\n"
                        "  or serve another one:  python app.py --model PATH (an exported folder or .ckpt),\n"
                        "                         or set MODEL_DIR=PATH")
    return TextClassifier.load(args.model or default_model, base_model=args.base_model, runtime=args.runtime)
