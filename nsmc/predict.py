"""Score a file of any size with an exported model: streamed in chunks, every core busy, resumable.

    python -m nsmc.predict --model models/nsmc-small reviews.csv scored.csv
    python -m nsmc.predict --model runs/topics/export posts.jsonl.gz out.jsonl --text_column_names title,body
    python -m nsmc.predict --model models/nsmc-small big.tsv.gz scored.csv --resume   # after Ctrl-C

Input, by extension, each optionally `.gz`: `.csv`, `.tsv`, `.jsonl` (one object a line), and `.txt`: one
text a line, or, when its first line is a tab-separated header naming the text column, a TSV such as
NSMC's `ratings_test.txt`. `--text_column_names a,b` joins several columns with a space, as training does.
Output, by extension, optionally `.gz`: `.csv` or `.jsonl`, holding the input's columns, one probability
column per label (names from the model's config) and the predicted label; a name the input already uses
gets a `predicted_` prefix. Blank texts get empty scores. docs/predict.md has the details.

The input is read CHUNK_ROWS rows at a time and each scored chunk is appended whole; OUTPUT.progress.json
(replaced atomically after each chunk, removed at the end) says how many chunks and bytes are done. So
memory stays flat whatever the size, a kill leaves a valid output up to the last chunk, and `--resume`
cuts off anything past it and goes on without scoring a row twice.

Rows are read with the stdlib csv reader in strict mode, not pandas' chunked read_csv: on one unbalanced
quote pandas' C parser aborts the whole file and its python engine silently drops every line after it,
while csv raises for that record alone, which is skipped and counted like any other bad row.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import itertools
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from nsmc.cli import command_errors
from nsmc.corpus import cell_text, file_format, open_text
from nsmc.errors import UserError
from nsmc.inference import MAX_CHARS, TextClassifier, is_blank, rows
from nsmc.runtime import DEFAULT_RUNTIME, HELP, RUNTIMES

INPUTS = (".csv", ".tsv", ".txt", ".jsonl")
OUTPUTS = (".csv", ".jsonl")
DEFAULT_COLUMN = "document"  # NSMC's text column
CHUNK_ROWS = 10_000  # rows read, scored and appended at once: a kill loses at most this much work
SLICE_ROWS = 1_024  # rows a predict_proba call: the bar moves, and Ctrl-C is answered, within one slice
DECIMALS = 6  # the app shows 4; a file of a million rows is ranked by them, so 6 (a float's repr is ~18)
MAX_EXAMPLES = 5  # bad rows named by line number in the summary
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)
MAX_FIELD = 1 << 20  # a stray quote makes csv swallow lines up to the next quote: at most this many chars


# --- result rows --------------------------------------------------------------------------------


def result_rows(texts: list[str], probs: np.ndarray, label_names: list[str]) -> list[dict]:
    """What scoring adds to each row: the app's result rows (a probability per label, the top label,
    whether the text was cut; blank texts get empty cells) without their copy of the text, since the
    output keeps the input's own columns."""
    shared = rows(texts, probs, label_names, DECIMALS)
    return [{k: v for k, v in row.items() if k != "document"} for row in shared]


def result_columns(label_names: list[str]) -> list[str]:
    return list(result_rows([""], np.zeros((1, len(label_names))), label_names)[0])


def column_names(value: str) -> list[str]:
    """`--text_column_names a,b` as a list, as transformers' text-classification example reads it."""
    return [c.strip() for c in value.split(",") if c.strip()]


def joined_texts(frame: pd.DataFrame, text_columns: list[str]) -> list[str]:
    """The text of each row: its non-blank text columns, stripped, joined with a space (as training
    joins them)."""
    parts = [frame[c].map(cell_text) for c in text_columns]
    if len(parts) == 1:
        return list(parts[0])
    return [" ".join(t for t in row if t) for row in zip(*parts)]


def scored_frame(frame: pd.DataFrame, texts: list[str], probs: np.ndarray,
                 label_names: list[str]) -> pd.DataFrame:
    """`frame` with the result columns appended, each renamed `predicted_<name>` if the input has <name>."""
    taken = set(map(str, frame.columns))
    results = pd.DataFrame.from_records(result_rows(texts, probs, label_names), index=frame.index,
                                        columns=result_columns(label_names))
    results.columns = [f"predicted_{c}" if c in taken else c for c in results.columns]
    return pd.concat([frame, results], axis=1)


def score(classifier: TextClassifier, texts: list[str], progress=None) -> np.ndarray:
    """Probabilities for `texts`, SLICE_ROWS at a time (each slice spread over every core)."""
    probs = np.zeros((len(texts), len(classifier.label_names)), dtype=np.float32)
    for start in range(0, len(texts), SLICE_ROWS):
        scored = classifier.submit(texts[start : start + SLICE_ROWS])
        try:
            probs[start : start + SLICE_ROWS] = scored.result()
        except KeyboardInterrupt:
            # Let the slice's passes end first: the batcher's (daemon) threads, stopped in the middle of
            # a pass as the interpreter exits, abort the process ("terminate called without an active
            # exception").
            wait([scored])
            raise
        if progress is not None:
            progress.update(min(SLICE_ROWS, len(texts) - start))
    return probs


# --- reading ------------------------------------------------------------------------------------


@dataclass
class Counts:
    """What happened to the input's rows; kept in the progress file so a resumed run reports them all."""

    rows: int = 0  # rows written (scored, or blank)
    blank: int = 0
    invalid_utf8: int = 0  # rows with undecodable bytes, read as U+FFFD and scored
    truncated: int = 0  # texts over MAX_CHARS, scored on their start
    skipped: dict = field(default_factory=dict)  # reason -> rows
    examples: list = field(default_factory=list)  # "line N: reason", the first few

    def skip(self, reason: str, first_line: int, last_line: int) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.examples) < MAX_EXAMPLES:
            where = f"line {first_line}" if first_line >= last_line else f"lines {first_line}-{last_line}"
            self.examples.append(f"{where}: {reason}")

    def add(self, texts: list[str]) -> None:
        self.rows += len(texts)
        self.blank += sum(map(is_blank, texts))
        self.truncated += sum(len(t) > MAX_CHARS for t in texts)

    def summary(self) -> list[str]:
        lines = []
        if self.blank:
            lines.append(f"  blank text (empty scores): {self.blank:,}")
        if self.invalid_utf8:
            lines.append(f"  invalid UTF-8 (bytes read as \ufffd, scored): {self.invalid_utf8:,}")
        if self.truncated:
            lines.append(f"  over {MAX_CHARS:,} characters (scored on the start): {self.truncated:,}")
        if self.skipped:
            reasons = ", ".join(f"{n:,} {why}" for why, n in Counter(self.skipped).most_common())
            examples = "; ".join(self.examples)
            lines.append(f"  skipped: {sum(self.skipped.values()):,} ({reasons}; e.g. {examples})")
        return lines


def _table_rows(lines, delimiter: str, counts: Counts) -> Iterator[list]:
    """The header, then rows of its width; a record with broken quoting or another width is skipped
    and counted (line numbers are the file's)."""
    csv.field_size_limit(MAX_FIELD)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    width = None
    while True:
        first = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            reason = f"field over {MAX_FIELD:,} characters" if "field limit" in str(e) else "broken quoting"
            counts.skip(reason, first, reader.line_num)
            continue
        if width is None:
            width = len(row)
        elif len(row) != width:
            reason = f"{len(row)} fields instead of {width}" if row else "empty line"
            counts.skip(reason, first, reader.line_num)
            continue
        if any("\ufffd" in v for v in row):
            counts.invalid_utf8 += 1
        yield row


def _jsonl_rows(lines, text_columns: list[str], counts: Counts, name: str) -> Iterator[list]:
    """The keys of the first object as the header, then each object's values for them."""
    columns = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            counts.skip("empty line", number, number)
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            counts.skip("not valid JSON", number, number)
            continue
        if not isinstance(obj, dict):
            counts.skip("not a JSON object", number, number)
            continue
        if columns is None:
            columns = list(obj)
            check_columns(columns, text_columns, name, "key")
            yield columns
        if "\ufffd" in line:
            counts.invalid_utf8 += 1
        yield [obj.get(c) for c in columns]


def _text_rows(lines, column: str, counts: Counts) -> Iterator[list]:
    yield [column]
    for line in lines:
        text = line.rstrip("\r\n")
        if "\ufffd" in text:
            counts.invalid_utf8 += 1
        yield [text]


def check_columns(columns: list[str], text_columns: list[str], name: str, what: str = "column") -> None:
    missing = [c for c in text_columns if c not in columns]
    if missing:
        found = ", ".join(repr(c) for c in columns[:20]) or "(none)"
        raise UserError(f"{name} has no {what} {', '.join(map(repr, missing))} ({what}s found: {found}). "
                        f"Name the text {what}(s) with --text_column_names NAME[,NAME...].")
    twice = [c for c, n in Counter(columns).items() if n > 1]
    if twice:
        raise UserError(f"{name} has the {what} {twice[0]!r} more than once; rename one.")


def read_rows(path: Path, text_columns: list[str], counts: Counts) -> tuple[list[str], Iterator[list], int]:
    """(columns, the rows as lists, lines the header takes), streaming; bad rows are counted, not raised."""
    fmt = file_format(path, INPUTS, "input")
    f = open_text(path)
    lines = iter(f)
    header_lines = 1
    if fmt == ".txt":
        first = next(lines, "")
        lines = itertools.chain([first] if first else [], lines)
        fields = first.rstrip("\r\n").split("\t")
        # NSMC's ratings files are .txt but tab-separated, with a header naming the text column.
        if len(fields) > 1 and any(c in fields for c in text_columns):
            rows = _table_rows(lines, "\t", counts)
        else:
            rows, header_lines = _text_rows(lines, text_columns[0], counts), 0
    elif fmt == ".jsonl":
        rows, header_lines = _jsonl_rows(lines, text_columns, counts, path.name), 0
    else:
        rows = _table_rows(lines, "\t" if fmt == ".tsv" else ",", counts)
    columns = next(rows, None)
    if columns is None:
        f.close()
        raise UserError(f"{path.name} is empty: nothing to score.")
    if fmt == ".txt" and not header_lines and len(text_columns) > 1:
        raise UserError(f"{path.name} holds one text a line, so there are no columns to join "
                        f"({', '.join(text_columns)}).")
    check_columns(columns, text_columns, path.name)
    return columns, rows, header_lines


def chunks(columns: list[str], rows: Iterator[list], size: int) -> Iterator[pd.DataFrame]:
    while batch := list(itertools.islice(rows, size)):
        yield pd.DataFrame(batch, columns=columns, dtype=object)


def count_lines(path: Path) -> int:
    """Lines in the (decompressed) file: the progress bar's total, an estimate when texts span lines."""
    with (gzip.open if path.name.endswith(".gz") else open)(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


# --- writing ------------------------------------------------------------------------------------


def encode(frame: pd.DataFrame, fmt: str, gz: bool, header: bool = False) -> bytes:
    """One chunk of output as bytes; gzip members appended one after another make one valid .gz file."""
    if fmt == ".csv":
        text = frame.to_csv(index=False, header=header, lineterminator="\n")
    else:
        text = frame.to_json(orient="records", lines=True, force_ascii=False) if len(frame) else ""
        text = text if not text or text.endswith("\n") else text + "\n"
    data = text.encode("utf-8")
    return gzip.compress(data, mtime=0) if gz and data else data


@contextlib.contextmanager
def _uninterrupted():
    """Ctrl-C and SIGTERM wait until a chunk and its progress record are both written, then interrupt.
    Python handlers, not a signal mask: the mask is per thread, and any of torch's, ONNX Runtime's or the
    tokenizer's threads may take the signal and have the main thread raise at its next instruction."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = {s: signal.getsignal(s) for s in HELD_SIGNALS}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:  # an ignored signal (nohup, a background job) stays ignored
            signal.signal(s, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if held:
        raise KeyboardInterrupt


def _write_json_atomic(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def progress_path(output: Path) -> Path:
    return output.with_name(output.name + ".progress.json")


@dataclass
class Progress:
    """The progress file: the job a resumed run must match, and where it goes on from."""

    job: dict  # see job(): resuming with another input or model would mix two jobs in one output
    chunk_rows: int
    chunks: int = 0  # input chunks done
    bytes: int = 0  # valid length of the output
    counts: dict = field(default_factory=dict)


def job(args: argparse.Namespace, source: Path, text_columns: list[str]) -> dict:
    stat = source.stat()
    return {"input": str(source.resolve()), "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
            "text_columns": text_columns, "model": str(Path(args.model).resolve()), "runtime": args.runtime}


class Output:
    """The output file, appended a whole chunk at a time, and its progress file."""

    def __init__(self, path: Path, progress: Progress):
        self.path, self.progress, self.sidecar = path, progress, progress_path(path)
        if not progress.bytes:  # from here on, an interrupted run can be resumed
            _write_json_atomic(self.sidecar, asdict(progress))
        self.file = open(path, "r+b" if progress.bytes else "wb")
        self.file.truncate(progress.bytes)  # a chunk written after the last progress record goes again
        self.file.seek(progress.bytes)

    def append(self, data: bytes, counts: Counts, chunks: int = 1) -> None:
        with _uninterrupted():
            self.file.write(data)
            self.file.flush()
            os.fsync(self.file.fileno())
            self.progress.chunks += chunks
            self.progress.bytes += len(data)
            self.progress.counts = asdict(counts)
            _write_json_atomic(self.sidecar, asdict(self.progress))

    def close(self, finished: bool) -> None:
        self.file.close()
        if finished:
            self.sidecar.unlink()


# --- the command --------------------------------------------------------------------------------


def start(args: argparse.Namespace, source: Path, output: Path, text_columns: list[str]) -> Progress:
    """A fresh Progress, or the interrupted run's when resuming (after checking it is the same job)."""
    sidecar = progress_path(output)
    this_job = job(args, source, text_columns)
    if args.resume and sidecar.is_file() and output.is_file():
        try:
            saved = Progress(**json.loads(sidecar.read_text(encoding="utf-8")))
            changed = [k for k, v in this_job.items() if saved.job.get(k) != v]
        except (OSError, ValueError, TypeError, AttributeError):
            raise UserError(f"{sidecar} is unreadable; start again with --overwrite.") from None
        if changed:
            was = ", ".join(f"{k} {saved.job.get(k)}" for k in changed)
            raise UserError(f"{output} was begun with another {', '.join(changed)} ({was}); "
                            f"resume with the same, or start again with --overwrite.")
        if output.stat().st_size < saved.bytes:
            raise UserError(f"{output} is shorter than {sidecar.name} says; start again with --overwrite.")
        return saved
    if output.exists() and not args.overwrite:
        if args.resume:
            raise UserError(f"{output} exists but has no progress file ({sidecar.name}), so it is not an "
                            f"interrupted run (a finished one removes it). Use --overwrite to score again.")
        raise UserError(f"{output} exists. Add --resume to continue an interrupted run, "
                        f"or --overwrite to replace it.")
    return Progress(job=this_job, chunk_rows=args.chunk_rows)


def resume_command(argv: list[str]) -> str:
    kept = [a for a in argv if a not in ("--overwrite", "--resume")]
    return shlex.join(["python", "-m", "nsmc.predict", *kept, "--resume"])


def run(args: argparse.Namespace, argv: list[str]) -> Counts:
    from tqdm import tqdm

    source, output = Path(args.input), Path(args.output)
    text_columns = column_names(args.text_column_names)
    if not text_columns:
        raise UserError("--text_column_names is empty: name the text column(s), "
                        "e.g. --text_column_names document.")
    if not source.is_file():
        raise UserError(f"{source}: no such file.")
    out_fmt = file_format(output, OUTPUTS, "output")
    if output.resolve() == source.resolve():
        raise UserError("OUTPUT is the INPUT file: write the scores to another file.")
    if not output.parent.is_dir():
        raise UserError(f"{output.parent}: no such folder for the output.")
    progress = start(args, source, output, text_columns)
    counts = Counts()
    columns, rows, header_lines = read_rows(source, text_columns, counts)  # before the slow model load

    classifier = TextClassifier.load(args.model, base_model=args.base_model, runtime=args.runtime,
                                          log=lambda message: print(message, file=sys.stderr, flush=True))
    names = classifier.label_names
    frames = chunks(columns, rows, progress.chunk_rows)
    done = sum(len(next(frames, ())) for _ in range(progress.chunks))  # read again, not scored again
    if progress.chunks:
        vars(counts).update(progress.counts)  # in place: the row readers count into this object
        if done != counts.rows:
            raise UserError(f"{source} no longer holds the rows the interrupted run read; "
                            f"start again with --overwrite.")
    total = max(count_lines(source) - header_lines, done)

    gz = output.name.endswith(".gz")
    started, session_rows = time.perf_counter(), 0
    out = Output(output, progress)
    with tqdm(total=total, initial=done, unit=" rows", dynamic_ncols=True, disable=None) as bar:
        try:
            if not progress.bytes and out_fmt == ".csv":
                empty = pd.DataFrame(columns=columns, dtype=object)
                header = scored_frame(empty, [], np.zeros((0, len(names))), names)
                out.append(encode(header, out_fmt, gz, header=True), counts, chunks=0)
            for frame in frames:
                texts = joined_texts(frame, text_columns)
                data = encode(scored_frame(frame, texts, score(classifier, texts, bar), names), out_fmt, gz)
                counts.add(texts)
                out.append(data, counts)
                session_rows += len(texts)
        except KeyboardInterrupt:
            out.close(finished=False)
            bar.close()
            print(f"\nInterrupted: {progress.counts.get('rows', 0):,} rows are scored and saved in {output} "
                  f"(a valid file up to there).\nContinue with:\n  {resume_command(argv)}", file=sys.stderr)
            raise SystemExit(130) from None
    out.close(finished=True)
    seconds = time.perf_counter() - started
    print(f"Wrote {counts.rows:,} rows to {output} ({session_rows:,} scored in this run, {seconds:,.1f} s, "
          f"{session_rows / max(seconds, 1e-9):,.0f} rows/s).", *counts.summary(), sep="\n")
    return counts


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nsmc.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", metavar="INPUT", help="file to score: .csv, .tsv, .txt, .jsonl (or .gz)")
    parser.add_argument("output", metavar="OUTPUT", help="where to write: .csv or .jsonl, optionally .gz")
    parser.add_argument("--model", required=True, help="exported model folder or Lightning .ckpt")
    parser.add_argument("--base-model", "--base_model", dest="base_model",
                        help="base model name or folder, for a .ckpt that carries no config/tokenizer")
    parser.add_argument("--runtime", choices=RUNTIMES,
                        default=os.environ.get("NSMC_RUNTIME", DEFAULT_RUNTIME),
                        help=f"{HELP} (default: $NSMC_RUNTIME, else {DEFAULT_RUNTIME}, as for app.py)")
    parser.add_argument("--text_column_names", "--text-column-names", default=DEFAULT_COLUMN,
                        help=f"the text column(s), comma-separated, joined with a space (default: "
                             f"{DEFAULT_COLUMN}); for a plain .txt, its one column's name in the output")
    parser.add_argument("--chunk_rows", "--chunk-rows", type=int, default=CHUNK_ROWS,
                        help=f"rows scored and appended at once (default: {CHUNK_ROWS:,}); --resume "
                             f"keeps the interrupted run's")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue an interrupted run into OUTPUT")
    again.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    args = parser.parse_args(argv)
    if args.chunk_rows < 1:
        parser.error("--chunk_rows must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    with command_errors("nsmc.predict"):  # Ctrl-C once writing: run() says how to resume
        run(parse_args(argv), argv)


if __name__ == "__main__":
    main()
