"""Read labelled text files: NSMC's rating files (`id<TAB>document<TAB>label`) and a user's own data
(.csv, .tsv, .txt, .json, .jsonl, each optionally .gz, with any column names and labels).

Both quoting styles seen in the wild are handled: the pandas/CSV style of `../shared/data/nsmc`
(`"a ""quoted"" word"`) and the real NSMC files, where a document holding quotes was quoted twice
over (three quotes around the text). Each physical line is parsed on its own, so one stray quote can never
swallow the lines after it, and every line is accounted for: read, skipped (with a reason) or the header.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from nsmc.errors import UserError

# The one place the label names live: index = the integer label in the files.
LABELS = ("negative", "positive")
SURROGATE = re.compile("[\ud800-\udfff]")  # half a UTF-16 pair: not text UTF-8 can encode
HEADER = ("id", "document", "label")
SPLITS = ("train", "test")
# Files are read whole into memory: say so above this size, refuse above the limit.
ANNOUNCE_BYTES = 100 * 2**20
MAX_FILE_BYTES = 2 * 2**30
FORMATS = (".csv", ".tsv", ".txt", ".json", ".jsonl")
FORMAT_NAMES = {".csv": ".csv", ".tsv": ".tsv", ".txt": ".txt (tab-separated)",
                ".json": ".json (a list of objects)", ".jsonl": ".jsonl (one object a line)"}


def _summary(path: str, n: int, unit: str, skipped: Counter, examples: list, where: str) -> str:
    text = f"{path}: {n:,} {unit}"
    if skipped:
        reasons = ", ".join(f"{k:,} {why}" for why, k in skipped.most_common())
        text += f"; skipped {sum(skipped.values()):,} malformed rows ({reasons}"
        text += f"; e.g. {', '.join(f'{where} {no}' for no, _ in examples)})" if examples else ")"
    return text


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
        return _summary(self.path, len(self), "reviews", self.skipped, self.examples, "line")


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


def check_header(path: str | Path) -> None:
    """Refuse a rating file whose header has another shape (comma-separated, other order), before its
    rows are all skipped as malformed: say what was expected and what was found."""
    with open_text(path) as f:
        line = f.readline().strip()
    names = [n.strip().strip('"').lower() for n in re.split(r"[\t,;]", line)]
    if tuple(_split(line)) == HEADER or not {"document", "label"} <= set(names):
        return
    shape = " (comma-separated)" if "," in line and "\t" not in line else ""
    raise UserError(
        f"{path}: expected NSMC's tab-separated columns id, document, label in that order; found the header "
        f"{line[:120]!r}{shape}. Save it tab-separated with those columns, or train on it as your own data "
        f"(a comma-separated file named .csv): --train_file FILE --text_column_names document "
        f"--label_column_name label."
    )


def is_ratings(path: str | Path) -> bool:
    """The one test of "is this an NSMC rating file": its header is `id<TAB>document<TAB>label`."""
    with open_text(path) as f:
        return tuple(_split(f.readline().rstrip("\r\n"))) == HEADER


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


@dataclass
class LabelledTexts:
    """One file of a user's dataset: the texts (columns joined by a space) and labels as written."""

    path: str
    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: list[tuple[int, str]] = field(default_factory=list)  # first few (row number, reason)

    def __len__(self) -> int:
        return len(self.texts)

    def summary(self) -> str:
        return _summary(self.path, len(self), "rows", self.skipped, self.examples, "row")


def file_format(path: str | Path, allowed: tuple[str, ...] = FORMATS, role: str = "") -> str:
    """One of `allowed` ('.csv', '.tsv', ...) from the name (a trailing .gz aside), or a UserError
    naming what is accepted; `role` ("input", "output") names the file in that message."""
    suffixes = Path(path).suffixes
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    suffix = suffixes[-1].lower() if suffixes else ""
    if suffix not in allowed:
        names, what = [FORMAT_NAMES[f] for f in allowed], f"{role} format" if role else "format"
        raise UserError(f"{path}: unknown {what} {suffix or '(no extension)'!r}; name it "
                        f"{', '.join(names[:-1])} or {names[-1]}, optionally .gz.")
    return suffix


def _records(path: Path, fmt: str, skip) -> tuple[list[str], list[dict]]:
    """(column names, rows as dicts) of a file in any of FORMATS."""
    import pandas as pd

    if fmt == ".csv":
        with open_text(path) as f:
            def bad_row(fields):
                skip(0, f"{len(fields)} columns, not as many as the header")

            try:  # the python engine, for its hook that counts malformed rows instead of failing
                frame = pd.read_csv(f, dtype=str, keep_default_na=False, engine="python",
                                    on_bad_lines=bad_row)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error) as e:
                detail = str(e).splitlines()[0][:200]
                raise UserError(f"{path} is not a readable CSV file ({detail}).") from None
        return [str(c) for c in frame.columns], frame.to_dict("records")
    with open_text(path) as f:
        if fmt in (".tsv", ".txt"):  # NSMC's quoting quirks: each line parsed on its own (see _split)
            columns = _split(f.readline().rstrip("\r\n"))
            rows = []
            for number, line in enumerate(f, start=1):
                fields = _split(line.rstrip("\r\n"))
                if len(fields) == len(columns):
                    rows.append(dict(zip(columns, fields)))
                elif line.strip():
                    reason = f"{len(fields)} columns, not {len(columns)}" if fields else "unbalanced quotes"
                    skip(number, reason)
            return columns, rows
        if fmt == ".jsonl":
            rows = []
            for number, line in enumerate(f, start=1):
                try:
                    row = json.loads(line) if line.strip() else None
                except ValueError:
                    row = "bad"
                if isinstance(row, dict):
                    rows.append(row)
                elif row is not None:
                    skip(number, "not a JSON object")
        else:
            try:
                rows = json.load(f)
            except ValueError as e:
                raise UserError(f"{path} is not valid JSON ({e}). A .json file holds one list of objects; "
                                f"for one object a line, name it .jsonl.") from None
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                what = "a list with non-objects" if isinstance(rows, list) else f"a {type(rows).__name__}"
                raise UserError(f"{path}: a .json file must hold a list of objects, like "
                                f'[{{"text": "...", "label": "..."}}, ...]; this one holds {what}.')
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return columns, rows


def as_text(value) -> str:
    """Any input as a valid string: None -> "", others -> str(), lone surrogates (which arrive
    through JSON and make the Rust tokenizer raise) -> U+FFFD."""
    if value is None:
        return ""
    return SURROGATE.sub("\ufffd", value if isinstance(value, str) else str(value))


def cell_text(value) -> str:
    """A table or JSON cell as text, read the same way for training and for scoring: missing (None,
    NaN, pandas' NA) is '', 1.0 from a JSON number is '1', lone surrogates are U+FFFD; stripped."""
    if isinstance(value, float):
        return "" if math.isnan(value) else str(int(value)) if value.is_integer() else str(value)
    if value is None or type(value).__name__ == "NAType":  # pandas.NA, without importing pandas here
        return ""
    return as_text(value).strip()


def read_labelled(path: str | Path, text_columns: list[str], label_column: str, log=print,
                  max_examples: int = 5) -> LabelledTexts:
    """Read a user's labelled file. Rows with an empty text or label are counted and skipped."""
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file.")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UserError(f"{path} is {size / 2**30:.1f} GiB; files are read whole into memory, and the limit "
                        f"is {MAX_FILE_BYTES / 2**30:.0f} GiB. Train on a sample, or split it into smaller "
                        f"files.")
    if size > ANNOUNCE_BYTES:
        log(f"Reading {path} ({size / 2**20:,.0f} MiB) into memory...")
    data = LabelledTexts(path=str(path))

    def skip(number: int, reason: str) -> None:
        data.skipped[reason] += 1
        if number and len(data.examples) < max_examples:
            data.examples.append((number, reason))

    columns, rows = _records(path, fmt, skip)
    if not rows and not data.skipped:
        raise UserError(f"{path} has no rows{' (not even a header)' if not columns else ''}.")
    missing = [c for c in [*text_columns, label_column] if c not in columns]
    if missing:
        shape = " (one column: is it another format than its extension says?)" if len(columns) == 1 else ""
        raise UserError(f"{path}: no column {', '.join(map(repr, missing))}; the columns found are "
                        f"{', '.join(map(repr, columns))}{shape}. Pass --text_column_names and "
                        f"--label_column_name with columns of the file.")
    for number, row in enumerate(rows, start=1):
        text = " ".join(t for t in (cell_text(row.get(c)) for c in text_columns) if t)
        label = cell_text(row.get(label_column))
        if not text or not label:
            skip(number, "empty text" if not text else "empty label")
            continue
        data.texts.append(text)
        data.labels.append(label)
    if not data.texts:
        raise UserError(f"{path}: none of its {len(rows):,} rows has both a text and a label "
                        f"(columns {text_columns} and {label_column!r}).")
    numeric = [bool(re.fullmatch(r"[+-]?\d+", label)) for label in data.labels]
    if 0 < sum(numeric) < len(numeric):
        word = data.labels[numeric.index(False)]
        number = data.labels[numeric.index(True)]
        raise UserError(f"{path}: the label column {label_column!r} mixes numbers and words (e.g. {number!r} "
                        f"and {word!r}); {sum(numeric):,} of {len(numeric):,} labels are numbers. "
                        f"Use one kind for every row.")
    return data


def label_order(labels: list[str], label_names: list[str] | None = None, path: str = "the train file",
                ratings: bool = False) -> list[str]:
    """The label set: `label_names` (their order), NSMC's names for a rating file's 0/1, or the labels
    found, sorted (numbers as numbers)."""
    found = set(labels)
    if label_names:
        if set(label_names) != found:
            raise UserError(f"--label_names {','.join(label_names)} does not match the labels in {path}: "
                            f"{', '.join(sorted(found))}. Name each label of the file once.")
        return list(label_names)
    if len(found) < 2:
        raise UserError(f"{path} has only one label ({', '.join(map(repr, found))}); a classifier needs two "
                        f"or more. Is --label_column_name the right column?")
    if ratings and found == {"0", "1"}:
        return list(LABELS)
    numeric = all(re.fullmatch(r"[+-]?\d+", label) for label in found)
    return sorted(found, key=int) if numeric else sorted(found)


def label_ids(labels: list[str], names: list[str], path: str) -> list[int]:
    """Labels as written -> class indices. NSMC's names also accept the files' 0 and 1."""
    index = {name: i for i, name in enumerate(names)}
    if tuple(names) == LABELS:
        index |= {"0": 0, "1": 1}
    unknown = sorted(set(labels) - index.keys())
    if unknown:
        raise UserError(f"{path} has labels the model does not know: {', '.join(map(repr, unknown[:10]))} "
                        f"(known: {', '.join(names)}). Every label must appear in the train file.")
    return [index[label] for label in labels]
