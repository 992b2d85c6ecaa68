import gzip

import pytest

from nsmc.corpus import LABELS, find_split, parse_line, read_lines, read_ratings
from nsmc.errors import UserError


def write(path, text, gz=False):
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_labels_are_readable():
    assert LABELS == ("negative", "positive")


def test_fixture_reads_every_row(fixtures_dir):
    r = read_ratings(fixtures_dir / "ratings_train.txt")
    assert r.header and len(r) == 400 and r.n_skipped == 0
    assert set(r.labels) == {0, 1}
    assert all(isinstance(d, str) for d in r.documents)


@pytest.mark.parametrize("gz", [False, True])
def test_both_quoting_styles_and_empty_documents(tmp_path, gz):
    text = (
        "id\tdocument\tlabel\n"
        '1\t"이이제이 ""민비특집"" 꼭 들어보세요."\t0\n'  # pandas/CSV style (../shared/data/nsmc)
        '2\t"""어머니"" 아무리 불러도"\t1\n'
        "3\t\t1\n"  # empty document stays an empty string
        "4\t그냥 평범한 리뷰\t0\n"
    )
    r = read_ratings(write(tmp_path / ("r.txt.gz" if gz else "r.txt"), text, gz))
    assert r.documents == ['이이제이 "민비특집" 꼭 들어보세요.', '"어머니" 아무리 불러도', "", "그냥 평범한 리뷰"]
    assert r.labels == [0, 1, 1, 0] and r.ids == ["1", "2", "3", "4"]


def test_real_nsmc_triple_quotes():
    # The original NSMC files quote a document that holds quotes "twice over".
    assert parse_line('9\t"""재밌다"""\t1') == ("9", '"재밌다"', 1)


def test_malformed_rows_are_counted_and_skipped(tmp_path):
    text = "id\tdocument\tlabel\n1\tgood\t1\n2\tno label column\n3\tbad label\t7\n4\t\"unclosed\t1\n5\tfine\t0\n"
    r = read_ratings(write(tmp_path / "r.txt", text))
    assert r.documents == ["good", "fine"]
    assert r.n_skipped == 3 and r.skipped["label not 0 or 1"] == 1
    assert [no for no, _ in r.examples] == [3, 4, 5]
    assert "skipped 3 malformed rows" in r.summary()


def test_invalid_utf8_does_not_crash(tmp_path):
    path = tmp_path / "r.txt"
    path.write_bytes("id\tdocument\tlabel\n1\t".encode() + b"\xff\xfe bad" + "\t1\n".encode())
    r = read_ratings(path)
    assert len(r) == 1 and "\ufffd" in r.documents[0]


def test_unlabeled_lines(fixtures_dir):
    lines = read_lines(fixtures_dir / "reviews_unlabeled.txt")
    assert len(lines) == 600 and all(l.strip() == l and l for l in lines)


def test_find_split_plain_gz_and_korpora_layout(tmp_path):
    write(tmp_path / "ratings_test.txt.gz", "id\tdocument\tlabel\n", gz=True)
    (tmp_path / "nsmc").mkdir()
    write(tmp_path / "nsmc" / "ratings_train.txt", "id\tdocument\tlabel\n")
    assert find_split(tmp_path, "test").name == "ratings_test.txt.gz"
    assert find_split(tmp_path, "train") == tmp_path / "nsmc" / "ratings_train.txt"
    with pytest.raises(UserError, match="ratings_train.txt.*--corpus_dir"):
        find_split(tmp_path / "missing", "train")


@pytest.mark.skipif(not __import__("pathlib").Path(__file__).parents[2].joinpath("shared/data/nsmc").is_dir(), reason="../shared/data not present")
def test_shared_data_row_counts():
    from pathlib import Path

    root = Path(__file__).parents[2] / "shared/data/nsmc"
    train, test = read_ratings(root / "ratings_train.txt.gz"), read_ratings(root / "ratings_test.txt.gz")
    assert (len(train), train.n_skipped, len(test), test.n_skipped) == (150_000, 0, 50_000, 0)
