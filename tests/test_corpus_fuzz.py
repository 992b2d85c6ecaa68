"""Property-based tests of the rating-file reader: hostile input never raises, no line is lost.

The reader's contract (nsmc/corpus.py): every physical line is read, skipped with a reason, or is
the header. The line count here is computed from the raw bytes, independently of the reader:
`\\n`, `\\r\\n` and a lone `\\r` each end a line (what `open(newline="")` splits on); a leading
byte-order mark is not a line.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nsmc.corpus import HEADER, read_ratings

# FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps the suite fast.
SETTINGS = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 150)), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def count_lines(data: bytes) -> int:
    data = data.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not content
    ends = len(re.findall(rb"\r\n|\r|\n", data))
    return ends + (1 if data and not data.endswith((b"\n", b"\r")) else 0)


def check_accounting(ratings, data: bytes) -> None:
    assert len(ratings) + ratings.n_skipped + int(ratings.header) == count_lines(data)
    assert len(ratings.ids) == len(ratings.documents) == len(ratings.labels)
    assert set(ratings.labels) <= {0, 1}
    assert all(n > 0 for n in ratings.skipped.values())
    assert len(ratings.examples) == min(5, ratings.n_skipped)
    numbers = [no for no, _ in ratings.examples]
    assert numbers == sorted(set(numbers)) and all(1 <= no <= count_lines(data) for no in numbers)
    ratings.summary()  # the message itself must not raise either


# Pieces that stress the parser: separators, both quoting styles, line ends, BOMs, NUL, bytes
# that are not UTF-8 (a lone continuation byte, a truncated 3-byte sequence, an overlong form).
PIECES = [b"\t", b'"', b'""', b'"""', b"\n", b"\r", b"\r\n", b"0", b"1", b"2", b" ", b"\x00", b"\xef\xbb\xbf",
          b"\x80", b"\xe3\x85", b"\xc0\xaf", b"\xff", "영화".encode(), "id\tdocument\tlabel".encode(), b"\\"]
hostile_bytes = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=8)), max_size=40).map(b"".join)


@SETTINGS
@given(data=hostile_bytes, gz=st.booleans())
@example(data=b'1\t"unclosed\t1\n2\tok\t0\n', gz=False)  # a stray quote must not swallow the next line
@example(data=b"id\tdocument\tlabel\r\n1\ta\t1\r2\tb\t0", gz=False)
@example(data=b"", gz=True)
def test_hostile_bytes_are_accounted_for(tmp_path, data, gz):
    path = tmp_path / ("ratings.txt.gz" if gz else "ratings.txt")
    path.write_bytes(gzip.compress(data) if gz else data)
    check_accounting(read_ratings(path), data)


# Text lines: arbitrary Unicode (no surrogates: they cannot be written as UTF-8), tabs and quotes.
line_text = st.text(st.one_of(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"),
                              st.sampled_from(['"', "\t", "0", "1"])), max_size=30)


@SETTINGS
@given(lines=st.lists(line_text, max_size=20), end=st.sampled_from(["\n", "\r\n"]),
       final_newline=st.booleans())
def test_arbitrary_text_lines_are_accounted_for(tmp_path, lines, end, final_newline):
    data = (end.join(lines) + (end if final_newline and lines else "")).encode("utf-8")
    path = tmp_path / "ratings.txt"
    path.write_bytes(data)
    check_accounting(read_ratings(path), data)


# Well-formed rows, quoted the way pandas / csv write them, must come back exactly.
document = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=40)
row = st.tuples(st.integers(0, 10**9).map(str), document, st.sampled_from([0, 1]))


@SETTINGS
@given(rows=st.lists(row, max_size=15), header=st.booleans())
@example(rows=[("1", 'a "quoted" word', 1), ("2", '"', 0), ("3", "tab\tinside", 1), ("4", "", 0)],
         header=True)
def test_well_formed_rows_round_trip(tmp_path, rows, header):
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", quotechar='"', lineterminator="\n")
    if header:
        writer.writerow(HEADER)
    writer.writerows(rows)
    path = tmp_path / "ratings.txt"
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    ratings = read_ratings(path)
    assert ratings.header == header
    assert ratings.n_skipped == 0, ratings.summary()
    assert list(zip(ratings.ids, ratings.documents, ratings.labels)) == rows


def test_real_nsmc_triple_quotes(tmp_path):
    """The original NSMC files quote a document holding quotes three times over."""
    path = tmp_path / "ratings.txt"
    path.write_text('id\tdocument\tlabel\n1\t"""진짜"" 최고"\t1\n', encoding="utf-8")
    ratings = read_ratings(path)
    assert (len(ratings), ratings.n_skipped) == (1, 0)
    assert ratings.documents == ['"진짜" 최고'] and ratings.labels == [1]


def test_bom_before_header_is_not_a_malformed_row(tmp_path):
    """Files saved by Excel or Notepad start with a UTF-8 byte-order mark."""
    path = tmp_path / "ratings.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "id\tdocument\tlabel\n1\t좋다\t1\n".encode())
    ratings = read_ratings(path)
    assert ratings.header and ratings.n_skipped == 0 and ratings.ids == ["1"]
