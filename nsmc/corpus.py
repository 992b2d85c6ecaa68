"""Read NSMC-format rating files: `id<TAB>document<TAB>label`, plain or gzipped.

Both quoting styles seen in the wild are handled: the pandas/CSV style of `../shared/data/nsmc`
(`"a ""quoted"" word"`) and the real NSMC files, where a document holding quotes was quoted twice
over (three quotes around the text). Each physical line is parsed on its own, so one stray quote can never swallow
the lines after it, and every line is accounted for: read, skipped (with a reason) or the header.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nsmc.errors import UserError

# The one place the label names live: index = the integer label in the files.
LABELS = ("negative", "positive")
HEADER = ("id", "document", "label")
SPLITS = ("train", "test")


@dataclass
class Ratings:
    """One rating file, column by column (the tokenizer wants the documents as one list)."""

    path: str
    ids: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    header: bool = False
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: list[tuple[int, str]] = field(default_factory=list)  # first few (line number, reason)

    def __len__(self) -> int:
        return len(self.documents)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        text = f"{self.path}: {len(self):,} reviews"
        if self.n_skipped:
            reasons = ", ".join(f"{n:,} {why}" for why, n in self.skipped.most_common())
            where = ", ".join(f"line {no}" for no, _ in self.examples)
            text += f"; skipped {self.n_skipped:,} malformed rows ({reasons}; e.g. {where})"
        return text


def open_text(path: str | Path) -> io.TextIOBase:
    """Open a plain or .gz text file. Undecodable bytes become U+FFFD rather than an exception;
    a leading UTF-8 byte-order mark (Excel, Notepad) is dropped, or it would spoil the header."""
    path = Path(path)
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")


def _split(line: str) -> list[str]:
    if '"' not in line:  # the fast path: 99% of NSMC lines hold no quote
        return line.split("\t")
    try:
        return next(csv.reader([line], delimiter="\t", quotechar='"', strict=True))
    except (csv.Error, StopIteration):
        return []


def parse_line(line: str) -> tuple[str, str, int] | str:
    """One line -> (id, document, label), or a short reason why it is malformed."""
    fields = _split(line.rstrip("\r\n"))
    if len(fields) != 3:
        return f"{len(fields)} columns instead of 3" if fields else "unbalanced quotes"
    id_, document, label = fields
    if label.strip() not in ("0", "1"):
        return "label not 0 or 1"
    return id_, document, int(label)


def read_ratings(path: str | Path, max_examples: int = 5) -> Ratings:
    """Read a rating file. Malformed rows are counted and skipped, never fatal."""
    ratings = Ratings(path=str(path))
    with open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if number == 1 and tuple(_split(line.rstrip("\r\n"))) == HEADER:
                ratings.header = True
                continue
            parsed = parse_line(line)
            if isinstance(parsed, str):
                ratings.skipped[parsed] += 1
                if len(ratings.examples) < max_examples:
                    ratings.examples.append((number, parsed))
                continue
            ratings.ids.append(parsed[0])
            ratings.documents.append(parsed[1])
            ratings.labels.append(parsed[2])
    return ratings


def read_lines(path: str | Path) -> list[str]:
    """An unlabeled corpus: one review a line (blank lines dropped)."""
    with open_text(path) as f:
        return [line.strip() for line in f if line.strip()]


def find_split(corpus_dir: str | Path, split: str) -> Path:
    """`ratings_{split}.txt` or `.txt.gz` in `corpus_dir` or in Korpora's `corpus_dir/nsmc/`."""
    corpus_dir = Path(corpus_dir)
    for folder in (corpus_dir, corpus_dir / "nsmc"):
        for name in (f"ratings_{split}.txt", f"ratings_{split}.txt.gz"):
            if (folder / name).is_file():
                return folder / name
    raise UserError(
        f"No NSMC {split} file in {corpus_dir}: expected ratings_{split}.txt or ratings_{split}.txt.gz "
        f"there or in {corpus_dir / 'nsmc'}. Point --corpus_dir at a folder holding them "
        f"(e.g. ../shared/data/nsmc), or leave it unset to download NSMC with Korpora."
    )


def download(root_dir: str | Path) -> Path:
    """Fetch NSMC with Korpora (the tutorial's way) into `root_dir`; a clear error when offline."""
    try:
        from Korpora import Korpora
    except ImportError as e:  # Korpora itself, or one of its dependencies (`No module named 'xlrd'`)
        raise UserError(
            f"Downloading NSMC needs Korpora and its dependencies ({e}): run `make setup-train`, or "
            "`pip install -r requirements-train.txt` and then `pip install --no-deps Korpora==0.2.0`. "
            "Or pass --corpus_dir with local ratings_train.txt / ratings_test.txt files."
        ) from None
    try:
        Korpora.fetch("nsmc", root_dir=str(root_dir))
    except Exception as e:  # Korpora raises whatever requests raises; the user needs one sentence
        raise UserError(
            f"Could not download NSMC with Korpora into {root_dir} ({type(e).__name__}: {e}). "
            "Without internet, train offline: pass --corpus_dir DIR with ratings_train.txt(.gz) and "
            "ratings_test.txt(.gz), e.g. --corpus_dir ../shared/data/nsmc."
        ) from None
    return Path(root_dir)
