"""The one error handling of every command (`app.py`, `python -m nsmc.predict`, `python -m train`, its
`.pretrain`, `.evaluate`, `.export`, `.vocab`, `.pseudo_label`).

A UserError (a mistake the user can fix) ends in its message and exit status 2, not a traceback. A run
folder the command created and filled with no checkpoint is removed, so no half-made run is left behind;
one that holds checkpoints is named, with the flag that continues it.
"""

from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from nsmc.errors import UserError

EXIT_USER_ERROR = 2  # argparse's status for a bad command line: the same kind of mistake
EXIT_INTERRUPTED = 130  # the shell's status for Ctrl-C


class Outputs:
    """The folders a command writes, each with whether it was there before the command ran."""

    def __init__(self):
        self.folders: dict[Path, bool] = {}

    def watch(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.folders.setdefault(folder, folder.exists())

    def tidy(self, interrupted: bool = False) -> str:
        """Remove the half-made folders this command created; a sentence about any run it leaves to continue
        (after a mistake, only a run it started: a folder that was there is the user's, left as it was)."""
        notes = []
        for folder, existed in self.folders.items():
            if not folder.is_dir() or (existed and not interrupted):
                continue
            if any(folder.glob("checkpoints/*.ckpt")):
                notes.append(f"The run so far is in {folder}: the same command with --resume continues it.")
            elif not existed:
                shutil.rmtree(folder, ignore_errors=True)
        return " ".join(notes)


@contextmanager
def command_errors(prog: str = "error"):
    """`with command_errors() as outputs:` around a command's body; `outputs.watch(folder)` for each
    folder it writes. Messages start with `prog:`."""
    outputs = Outputs()
    try:
        yield outputs
    except UserError as e:
        note = outputs.tidy()
        print(f"{prog}: {e}" + (f"\n{note}" if note else ""), file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        note = outputs.tidy(interrupted=True)
        print("interrupted." + (f" {note}" if note else ""), file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
