"""Where the app's own time goes under load: py-spy samples `python app.py` while bench/load.py's
clients call it, with the model's forward passes replaced by a constant (the serving layer alone).

Usage (py-spy is not in the requirements: `pip install py-spy`):
    python bench/profile_server.py --api gradio      # or --api json; --model DIR, --seconds N

Prints the requests/s reached and the functions holding the most samples that were not waiting
(inclusive: a function counts with everything it calls). bench/RESULTS.md, "Serving notes", quotes it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import load  # noqa: E402
from app_server import running_app  # noqa: E402

WAITING = ("Condition.wait", "EpollSelector.select", "BaseSelectorEventLoop._read_from_self")


def busy_functions(raw: Path, top: int) -> tuple[int, list[tuple[str, int]]]:
    """(busy samples, the `top` functions by inclusive busy samples) from py-spy's raw output."""
    counts, total = Counter(), 0
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        if frames[-1].startswith(WAITING):
            continue
        total += int(n)
        # "fn (file.py:12)" -> "fn (file.py)": a function counts once a sample, whatever the line
        for name in {f.split(":")[0] + ")" if "(" in f else f for f in frames}:
            counts[name] += int(n)
    return total, counts.most_common(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", choices=list(load.APIS), default="gradio")
    parser.add_argument("--model", default="models/nsmc-small")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    api, texts = load.APIS[args.api], load.reviews()
    raw = Path(tempfile.mkdtemp()) / "profile.txt"
    with running_app(args.model, load.log_file(), no_model=True) as (url, proc):
        port = urlparse(url).port
        load.run_load(api, port, proc.pid, texts, args.clients, 0, 300, 1)  # warm-up
        recorder = subprocess.Popen([spy, "record", "-p", str(proc.pid), "-d", str(args.seconds), "-r", "200",
                                     "-f", "raw", "-o", str(raw), "--nonblocking"])
        result = load.run_load(api, port, proc.pid, texts, args.clients, args.seconds + 3, 0, 2)
        if recorder.wait() != 0:
            sys.exit("py-spy could not sample the server (on Linux it may need root or ptrace rights)")
    total, top = busy_functions(raw, args.top)
    print(f"{args.api} API, model replaced by a constant: {result['requests'] / result['seconds']:.0f} "
          f"requests/s; {total:,} busy samples")
    for name, n in top:
        print(f"{n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
