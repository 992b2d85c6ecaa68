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
    assert r.documents == [
        '이이제이 "민비특집" 꼭 들어보세요.', '"어머니" 아무리 불러도', "", "그냥 평범한 리뷰"]
    assert r.labels == [0, 1, 1, 0] and r.ids == ["1", "2", "3", "4"]


def test_real_nsmc_triple_quotes():
    # The original NSMC files quote a document that holds quotes "twice over".
    assert parse_line('9\t"""재밌다"""\t1') == ("9", '"재밌다"', 1)


def test_malformed_rows_are_counted_and_skipped(tmp_path):
    text = ("id\tdocument\tlabel\n1\tgood\t1\n2\tno label column\n3\tbad label\t7\n"
            "4\t\"unclosed\t1\n5\tfine\t0\n")
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
    assert len(lines) == 600 and all(line.strip() == line and line for line in lines)


def test_find_split_plain_gz_and_korpora_layout(tmp_path):
    write(tmp_path / "ratings_test.txt.gz", "id\tdocument\tlabel\n", gz=True)
    (tmp_path / "nsmc").mkdir()
    write(tmp_path / "nsmc" / "ratings_train.txt", "id\tdocument\tlabel\n")
    assert find_split(tmp_path, "test").name == "ratings_test.txt.gz"
    assert find_split(tmp_path, "train") == tmp_path / "nsmc" / "ratings_train.txt"
    with pytest.raises(UserError, match="ratings_train.txt.*--corpus_dir"):
        find_split(tmp_path / "missing", "train")


@pytest.mark.skipif(not __import__("pathlib").Path(__file__).parents[2].joinpath("shared/data/nsmc").is_dir(),
                    reason="../shared/data not present")
def test_shared_data_row_counts():
    from pathlib import Path

    root = Path(__file__).parents[2] / "shared/data/nsmc"
    train, test = read_ratings(root / "ratings_train.txt.gz"), read_ratings(root / "ratings_test.txt.gz")
    assert (len(train), train.n_skipped, len(test), test.n_skipped) == (150_000, 0, 50_000, 0)


# --- a user's own files (read_labelled, label_order, label_ids) ------------------------------------

TOPICS = [("1", "김치찌개 국물이 진하다", "food"), ("2", "해운대 바다가 예뻤다", "travel"),
          ("3", "역전골이 터졌다", "sports")]


def write_topics(path, fmt: str, rows=TOPICS, bom: bool = False):
    """The rows in a format, with an extra column (id) and the columns in their own order."""
    import csv as csv_module
    import io
    import json

    if fmt in (".tsv", ".txt", ".csv"):
        buf = io.StringIO()
        writer = csv_module.writer(buf, delimiter="," if fmt == ".csv" else "\t", lineterminator="\n")
        writer.writerow(["topic", "id", "sentence"])
        writer.writerows([(label, id_, text) for id_, text, label in rows])
        text = buf.getvalue()
    else:
        objects = [{"id": int(id_), "sentence": text, "topic": label} for id_, text, label in rows]
        text = json.dumps(objects, ensure_ascii=False) if fmt == ".json" else "".join(
            json.dumps(o, ensure_ascii=False) + "\n" for o in objects)
    return write(path, ("\ufeff" if bom else "") + text, gz=path.name.endswith(".gz"))


@pytest.mark.parametrize("name", ["d.tsv", "d.txt", "d.csv", "d.json", "d.jsonl", "d.csv.gz", "d.jsonl.gz"])
@pytest.mark.parametrize("bom", [False, True])
def test_every_format_reads_the_same_rows(tmp_path, name, bom):
    from nsmc.corpus import read_labelled

    fmt = "." + name.split(".")[1]
    data = read_labelled(write_topics(tmp_path / name, fmt, bom=bom), ["sentence"], "topic")
    assert data.texts == [t for _, t, _ in TOPICS] and data.labels == ["food", "travel", "sports"]


def test_json_cells_become_the_text_scoring_reads_too(tmp_path):
    """Numbers, nulls and a lone surrogate (half an emoji, as scraped JSON carries) in JSON cells:
    text the tokenizer takes, read as `python -m nsmc.predict` reads the same file."""
    from nsmc import predict
    from nsmc.corpus import read_labelled

    path = write(tmp_path / "d.jsonl", '{"t": "good \\ud83d movie", "n": 1.0, "label": 1}\n'
                                       '{"t": null, "n": 2.5, "label": "0"}\n')
    data = read_labelled(path, ["t", "n"], "label")
    assert data.texts == ["good \ufffd movie 1", "2.5"] and data.labels == ["1", "0"]
    data.texts[0].encode("utf-8")  # what the tokenizer and the cache key need
    columns, rows, _ = predict.read_rows(path, ["t", "n"], predict.Counts())
    [frame] = predict.chunks(columns, rows, 10)
    assert predict.joined_texts(frame, ["t", "n"]) == data.texts


def test_several_text_columns_are_joined_and_blank_rows_skipped(tmp_path):
    from nsmc.corpus import read_labelled

    path = write(tmp_path / "d.csv",
                 'title,body,label\n영화,"정말, 재밌다",1\n,지루함,0\n제목만,,0\n,,1\n빈 라벨,x,\n')
    data = read_labelled(path, ["title", "body"], "label")
    assert data.texts == ["영화 정말, 재밌다", "지루함", "제목만"] and data.labels == ["1", "0", "0"]
    assert data.skipped == {"empty text": 1, "empty label": 1}
    summary = "3 rows; skipped 2 malformed rows (1 empty text, 1 empty label; e.g. row 4, row 5)"
    assert summary in data.summary()


def test_labels_sorted_numbers_as_numbers_or_in_the_given_order():
    from nsmc.corpus import label_order

    assert label_order(["b", "a", "c", "a"]) == ["a", "b", "c"]
    assert label_order(["10", "2", "1"]) == ["1", "2", "10"]
    assert label_order(["b", "a"], ["b", "a"]) == ["b", "a"]
    assert label_order(["0", "1"]) == ["0", "1"]
    assert label_order(["0", "1"], ratings=True) == list(LABELS)  # NSMC's 0/1 keep their names
    with pytest.raises(UserError, match="does not match the labels"):
        label_order(["a", "b", "c"], ["a", "b"])
    with pytest.raises(UserError, match="only one label"):
        label_order(["a", "a"])


def test_label_ids_name_an_unknown_label():
    from nsmc.corpus import label_ids

    assert label_ids(["sports", "food"], ["food", "sports"], "f") == [1, 0]
    assert label_ids(["1", "negative"], list(LABELS), "f") == [1, 0]  # NSMC files write 0/1
    with pytest.raises(UserError, match="'weather'.*known: food, sports"):
        label_ids(["weather"], ["food", "sports"], "test.tsv")


@pytest.mark.parametrize("name, text, needles", [
    ("d.tsv", "id\tdocument\tlabel\n1\t좋다\t1\n", ["no column 'sentence'", "'id', 'document', 'label'"]),
    ("d.tsv", "id,sentence,topic\n1,좋다,food\n", ["one column", "'id,sentence,topic'"]),
    ("d.tsv", "", ["has no rows"]),
    ("d.csv", "sentence,topic\n", ["has no rows"]),
    ("d.json", '{"sentence": "좋다", "topic": "food"}', ["must hold a list of objects", "dict"]),
    ("d.json", '["좋다", "싫다"]', ["must hold a list of objects"]),
    ("d.json", '[{"sentence": "좋다", ', ["not valid JSON"]),
    ("d.jsonl", '{"sentence": "a", "topic": 1}\n{"sentence": "b", "topic": "pos"}\n',
     ["mixes numbers and words", "'1'", "'pos'"]),
    ("d.csv", "sentence,topic\na,\nb,\n", ["none of its 2 rows"]),
    ("d.xlsx", "x", ["unknown format '.xlsx'"]),
])
def test_bad_files_are_one_clear_message(tmp_path, name, text, needles):
    from nsmc.corpus import read_labelled

    path = write(tmp_path / name, text)
    with pytest.raises(UserError) as err:
        read_labelled(path, ["sentence"], "topic")
    for needle in needles:
        assert needle in str(err.value)


def test_a_huge_file_is_refused_by_its_size_before_reading(tmp_path):
    from nsmc.corpus import read_labelled

    path = tmp_path / "huge.csv"
    with open(path, "wb") as f:
        f.truncate(5 * 2**30)  # sparse: 5 GiB long, no disk used
    with pytest.raises(UserError, match="5.0 GiB.*limit is 2 GiB"):
        read_labelled(path, ["sentence"], "topic")


@pytest.mark.parametrize("header", ["id,document,label", "document\tid\tlabel", "label\tdocument"])
def test_a_rating_file_of_another_shape_names_expected_and_found(tmp_path, header):
    from nsmc.corpus import check_header

    path = write(tmp_path / "ratings_train.txt", header + "\n")
    with pytest.raises(UserError, match="expected NSMC's tab-separated columns id, document, label") as err:
        check_header(path)
    assert repr(header) in str(err.value)
    check_header(write(tmp_path / "ok.txt", "id\tdocument\tlabel\n"))  # NSMC's own header passes
    check_header(write(tmp_path / "headerless.txt", "1\t좋다\t1\n"))
