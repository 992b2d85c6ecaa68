"""Read reviews out of an uploaded file, with limits, and write predictions back as CSV.

Accepted: `.txt` (one review a line) and `.csv` / `.tsv` with a `document` column (the NSMC
column name, so `ratings_test.txt`-style files renamed to `.tsv` work too). Anything else, or
a file over the limits, raises UserError with a message meant for the person who uploaded it.
"""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

from nsmc.errors import UserError

MAX_BYTES = 2 * 1024 * 1024  # 2 MB: ~15,000 NSMC-sized reviews, a few seconds of CPU for a small model
MAX_ROWS = 5_000  # texts a call, for every way in (upload, /predict_batch, the JSON API)
COLUMN = "document"
SUFFIXES = (".txt", ".csv", ".tsv")
KEEP_BYTES = 64 * 2**20  # written CSVs kept for download; Gradio has copied each into its cache already


def _decode(data: bytes, name: str) -> str:
    for encoding in ("utf-8-sig", "cp949"):  # cp949: what Korean Excel saves as "CSV"
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UserError(f"{name}: not UTF-8 (or Korean cp949) text. Save it as UTF-8 and upload it again.")


def _column(text: str, delimiter: str, name: str, max_rows: int) -> list[str]:
    csv.field_size_limit(MAX_BYTES)
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(rows)]
    except StopIteration:
        raise UserError(f"{name} is empty.") from None
    except csv.Error as e:
        raise UserError(f"{name}: cannot parse the header row ({e}).") from None
    if COLUMN not in header:
        shown = ", ".join(header[:8]) or "(none)"
        raise UserError(f"{name} has no '{COLUMN}' column (columns found: {shown}). "
                        f"Name the review column '{COLUMN}'.")
    index = header.index(COLUMN)
    docs = []
    try:
        for row in rows:
            if len(docs) > max_rows:  # stop early; the caller reports the limit
                break
            docs.append(row[index] if index < len(row) else "")
    except csv.Error as e:
        raise UserError(f"{name}: malformed row {rows.line_num} ({e}).") from None
    return docs


def check_rows(n: int, max_rows: int = MAX_ROWS, what: str = "this call") -> None:
    """The one check of the row limit."""
    if n > max_rows:
        raise UserError(f"{what} has more than {max_rows:,} reviews; the limit is {max_rows:,} a call. "
                        "Split it.")


def read_reviews(path: str | Path, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS) -> list[str]:
    """The reviews in an uploaded file, in order (blank ones kept, so rows line up with the file)."""
    path = Path(path)
    name = path.name
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"{name}: upload a .txt (one review a line), .csv or .tsv "
                        f"(with a '{COLUMN}' column).")
    size = path.stat().st_size
    if size > max_bytes:
        raise UserError(f"{name} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. "
                        "Split it into smaller files.")
    data = path.read_bytes()
    if b"\x00" in data[:4096]:
        raise UserError(f"{name} looks like a binary file, not text.")
    text = _decode(data, name)
    if path.suffix.lower() == ".txt":
        reviews = [line.strip() for line in text.splitlines()]
        while reviews and not reviews[-1]:  # a trailing newline is not a review
            reviews.pop()
    else:
        reviews = _column(text, "\t" if path.suffix.lower() == ".tsv" else ",", name, max_rows)
    if not any(r.strip() for r in reviews):
        raise UserError(f"{name} holds no reviews.")
    check_rows(len(reviews), max_rows, name)
    return reviews


def trim_folder(folder: Path, max_bytes: int) -> None:
    """Delete the oldest files under folder (and their emptied folders) until the rest fit in max_bytes."""
    files = sorted(((p.stat().st_mtime, p.stat().st_size, p) for p in folder.rglob("*") if p.is_file()))
    total = sum(size for _, size, _ in files)
    for _, size, path in files:
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        if path.parent != folder and not any(path.parent.iterdir()):
            path.parent.rmdir()


FORMULA_START = tuple("=+-@|\t\r＝＋－＠")  # full-width forms too: some spreadsheets read them as ASCII


def _defuse(value):
    """A cell starting with = + - @ (| for DDE in LibreOffice) is run as a formula by
    spreadsheets (CSV injection), also after leading spaces; a leading apostrophe makes it plain text."""
    if isinstance(value, str) and (value[:1] in FORMULA_START or value.lstrip()[:1] in FORMULA_START):
        return "'" + value
    return value


def write_csv(rows: list[dict], folder: str | Path, keep_bytes: int = KEEP_BYTES) -> Path:
    """folder/<unique>/predictions.csv, in UTF-8 with a byte-order mark so that Excel shows Hangul; older
    files go first so that the folder stays under keep_bytes."""
    trim_folder(Path(folder), keep_bytes)
    path = Path(folder) / uuid.uuid4().hex / "predictions.csv"
    path.parent.mkdir(parents=True)
    rows = [{k: _defuse(v) for k, v in row.items()} for row in rows]
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["document"])
        writer.writeheader()
        writer.writerows(rows)
    return path
