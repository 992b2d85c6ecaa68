import numpy as np

from nsmc.encoding import cache_key, encode, encode_file, load_encoded, pad_batch


def test_encode_unpadded_and_truncated(tiny_tokenizer):
    enc = encode(["재밌다", "정말 " * 100, ""], tiny_tokenizer, max_length=16, labels=[1, 0, 1])
    lengths = enc.lengths()
    assert lengths[1] == 16 and lengths[0] < 16 and lengths[2] == 2  # [CLS] [SEP] for an empty review
    ids, label = enc[0]
    assert ids[0] == tiny_tokenizer.cls_token_id and ids[-1] == tiny_tokenizer.sep_token_id and label == 1
    assert ids.tolist() == tiny_tokenizer("재밌다")["input_ids"]  # same ids as the transformers call


def test_subset_keeps_rows(tiny_tokenizer):
    enc = encode(["하나", "둘 셋", "넷 다섯 여섯"], tiny_tokenizer, 32, [0, 1, 0])
    sub = enc.subset(np.array([2, 0]))
    assert sub[0][0].tolist() == enc[2][0].tolist() and sub[1][0].tolist() == enc[0][0].tolist()
    assert sub.labels.tolist() == [0, 0]


def test_cache_is_reused_and_keyed(tmp_path, fixtures_dir, tiny_tokenizer):
    path, cache = fixtures_dir / "ratings_test.txt", tmp_path / "cache"
    logs = []
    first = encode_file(path, tiny_tokenizer, 64, cache, log=logs.append)
    second = encode_file(path, tiny_tokenizer, 64, cache, log=logs.append)
    assert "encoded earlier" in logs[-1] and np.array_equal(first.ids, second.ids)
    assert cache_key(path, tiny_tokenizer, 64) != cache_key(path, tiny_tokenizer, 32)
    files = list(cache.iterdir())
    assert len(files) == 1 and load_encoded(files[0]) is not None
    with np.load(files[0], allow_pickle=False) as z:  # plain arrays: nothing to unpickle
        assert set(z.files) == {"ids", "offsets", "labels"}


def test_pad_batch_pads_to_longest_only():
    batch = pad_batch([[2, 5, 3], [2, 3]], pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert pad_batch([[2, 3]], 0, pad_to_multiple_of=8)["input_ids"].shape == (1, 8)
    assert pad_batch([[2, 3]], 0, max_length=128)["input_ids"].shape == (1, 128)  # fixed shapes for TPU


SHARED_KCBERT = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "kcbert-base"


def test_kcbert_tokenizer_from_vocab_txt_keeps_case_and_hangul(fixtures_dir):
    """tests/fixtures/kcbert-tiny: kcbert's tokenizer settings and a slice of its vocab.txt
    (no tokenizer.json)."""
    from nsmc.loading import load_tokenizer

    tok = load_tokenizer(fixtures_dir / "kcbert-tiny")
    assert not (fixtures_dir / "kcbert-tiny" / "tokenizer.json").exists()
    assert tok.tokenize("ABC 영화가 정말 재밌었다ㅋㅋ") == [
        "A", "##BC", "영화", "##가", "정말", "재밌", "##었다", "##ㅋㅋ"]
    enc = encode(["ABC 영화가 정말 재밌었다ㅋㅋ"], tok, 32)
    assert tok.unk_token_id not in enc.ids.tolist()


def test_kcbert_tiny_tokenizes_the_fixtures_as_the_full_kcbert_vocab(fixtures_dir):
    import pytest

    if not (SHARED_KCBERT / "vocab.txt").is_file():
        pytest.skip("../shared/kcbert-base (kcbert's vocab.txt) not present")
    from nsmc.corpus import read_ratings
    from nsmc.loading import load_tokenizer

    tiny, full = load_tokenizer(fixtures_dir / "kcbert-tiny"), load_tokenizer(SHARED_KCBERT)
    texts = read_ratings(fixtures_dir / "ratings_test.txt").documents
    assert [tiny.tokenize(t) for t in texts] == [full.tokenize(t) for t in texts]


def test_a_rating_file_is_known_by_its_header_not_its_name(tmp_path, fixtures_dir, tiny_tokenizer):
    renamed = tmp_path / "reviews.txt"
    renamed.write_bytes((fixtures_dir / "ratings_test.txt").read_bytes())
    assert set(encode_file(renamed, tiny_tokenizer, 32, log=lambda _: None).labels.tolist()) == {0, 1}
    lines = tmp_path / "ratings_lines.txt"
    lines.write_text("좋은 영화\n지루함\n", encoding="utf-8")
    assert encode_file(lines, tiny_tokenizer, 32, log=lambda _: None).labels.tolist() == [-1, -1]
