"""nsmc.inference: probabilities, labels, hostile inputs, result rows, and occlusion attribution."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from conftest import make_tiny_model
from nsmc.inference import MAX_CHARS, TextClassifier, cap, rows
from nsmc.loading import load_classifier
from nsmc.runtime import Runtime

POS, NEG = "긍정 (positive)", "부정 (negative)"


@pytest.fixture(scope="module")
def clf(tiny_model_dir):
    # The exact fp32 path: int8 quantizes activations per batch, so batched and single rows would
    # differ by rounding (tests/test_runtime.py checks the other runtimes against this one).
    return TextClassifier.load(tiny_model_dir, runtime="torch")


def test_loads_labels_and_metrics(clf):
    assert clf.labels == [NEG, POS]
    assert clf.label_names == ["negative", "positive"]
    assert "test accuracy 50.0%" in clf.describe() and clf.runtime.name in clf.describe()


def test_probabilities_sum_to_one(clf):
    out = clf.predict(["정말 재밌었다", "시간이 아깝다. 최악", "ㅋㅋㅋㅋ"])
    assert len(out) == 3
    for probs in out:
        assert set(probs) == {NEG, POS}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(0.0 <= p <= 1.0 for p in probs.values())


def test_predict_proba_shape_and_order(clf):
    texts = ["짧다", "조금 더 긴 리뷰 문장입니다 " * 5, "중간 길이의 리뷰"]
    p = clf.predict_proba(texts)
    assert p.shape == (3, 2) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    # Batched (sorted, padded) rows equal one-at-a-time rows: padding and reordering change nothing.
    single = np.concatenate([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(p, single, atol=1e-5)


def test_blank_gives_empty_result_not_a_score(clf):
    assert clf.predict(["", "   \n\t"]) == [{}, {}]
    assert clf.explain("  ") is None
    assert clf.predict_proba([""]).shape == (1, 2)  # evaluation still gets a row


def test_huge_input_is_capped_before_tokenizing(clf):
    text = "재밌다 " * 25_000  # 100,000 characters
    assert cap(text) == (text[:MAX_CHARS], True)
    assert cap("짧다") == ("짧다", False)
    (probs,) = clf.predict([text])
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert clf.encode([text])[0].__len__() <= clf.max_length  # truncated to the model's positions
    assert clf.explain(text).truncated


@pytest.mark.parametrize("text", ["😀🎬👍🏽", "\x00\x07\x1b[31m 좋다 \u200b\u202e", "\ud800 lone surrogate",
                                  "<script>alert(1)</script>", "ℌ𝔢𝔩𝔩𝔬 Ｆｕｌｌ"])
def test_any_unicode(clf, text):
    (probs,) = clf.predict([text])
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_non_strings_become_text(clf):
    (probs,) = clf.predict([12345])
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


def test_explain_highlights_rebuild_the_text(clf):
    text = "정말  재밌었다\n현대판 모세"
    e = clf.explain(text)
    assert "".join(t for t, _ in e.highlights) == text
    assert [w for w, _ in e.words] == ["정말", "재밌었다", "현대판", "모세"]
    assert max(abs(v) for _, v in e.highlights if v is not None) == pytest.approx(1.0)


def test_explain_groups_long_texts(clf):
    e = clf.explain(" ".join(f"단어{i}" for i in range(200)), max_words=16)
    assert len(e.words) == 16


def _one_word_model(out_dir, tokenizer, trigger_id: int):
    """A tiny BERT wired by hand so that one token, anywhere in the text, makes it positive.

    Every embedding is zero except the trigger's ([c, -c, 0, ...]). Layer 1 attends uniformly
    (query and key zero) and copies values, so [CLS] picks up the trigger's direction whenever it
    is present; LayerNorm rescales it to full size whatever the text length. Everything else passes
    the residual stream through unchanged, and the classifier reads that direction."""
    from transformers import BertForSequenceClassification

    make_tiny_model(out_dir, tokenizer)
    model = BertForSequenceClassification.from_pretrained(out_dir)
    hidden = model.config.hidden_size
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.fill_(1.0)
        model.bert.embeddings.word_embeddings.weight[trigger_id, :2] = torch.tensor([1.0, -1.0])
        attn = model.bert.encoder.layer[0].attention
        attn.self.value.weight.copy_(torch.eye(hidden))
        attn.output.dense.weight.copy_(torch.eye(hidden))
        model.bert.pooler.dense.weight.copy_(torch.eye(hidden))
        model.classifier.weight[1, :2] = torch.tensor([3.0, -3.0])
    model.save_pretrained(out_dir)
    return out_dir


def test_attribution_ranks_the_deciding_word_first(tmp_path, tiny_tokenizer):
    # A whole word that is one token in the tiny vocabulary ("굿" = good), and fillers without it.
    trigger = next(w for w in ["굿", "짱", "꿀"] if tiny_tokenizer.tokenize(w) == [w])
    trigger_id = tiny_tokenizer.convert_tokens_to_ids(trigger)
    clf = TextClassifier.load(_one_word_model(tmp_path / "m", tiny_tokenizer, trigger_id), runtime="torch")
    fillers = "배우 들의 시간 이 너무 지루 하고 음악 은 별로".split()
    assert all(trigger_id not in clf.encode([w])[0] for w in fillers)

    with_it = clf.predict([" ".join(fillers[:4] + [trigger] + fillers[4:])])[0]
    without = clf.predict([" ".join(fillers)])[0]
    assert with_it[POS] > 0.9 and without[POS] == pytest.approx(0.5, abs=0.01)

    e = clf.explain(" ".join(fillers[:4] + [trigger] + fillers[4:]))
    assert e.label == POS
    (best, score), (_, runner_up) = e.ranked()[:2]
    assert best == trigger and score > 0.3 and abs(runner_up) < 0.05
    assert dict(e.highlights)[trigger] == pytest.approx(1.0)


# --- labels, rows, and how passes run ---------------------------------------------------------


def test_any_labels_come_from_the_config_and_only_nsmcs_get_korean_names(tmp_path, tiny_tokenizer):
    out = make_tiny_model(tmp_path / "three", tiny_tokenizer, labels=["sad", "calm", "happy"])
    clf = TextClassifier.load(out, runtime="torch")
    assert clf.label_names == clf.labels == ["sad", "calm", "happy"] and not clf.is_nsmc
    assert clf.predict_proba(["좋다", "싫다"]).shape == (2, 3)
    assert set(clf.predict(["좋다"])[0]) == {"sad", "calm", "happy"}
    assert clf.explain("정말 좋다").label in ("sad", "calm", "happy")


def test_an_export_folder_is_named_after_its_run(tmp_path, tiny_tokenizer):
    out = make_tiny_model(tmp_path / "my-run" / "export", tiny_tokenizer)
    assert TextClassifier.load(out, runtime="torch").name == "my-run"


def test_rows_give_a_column_per_label_and_empty_cells_for_blanks():
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25], [0.3, 0.3, 0.4]], dtype=np.float32)
    out = rows(["좋다", "   ", "x" * (MAX_CHARS + 1)], probs, ["a", "b", "c"])
    assert out[0] == {"document": "좋다", "a": 0.1, "b": 0.2, "c": 0.7, "label": "c", "truncated": False}
    assert out[1] == {"document": "   ", "a": None, "b": None, "c": None, "label": "", "truncated": False}
    assert out[2]["truncated"] is True and len(out[2]["document"]) == MAX_CHARS


class CountingRuntime(Runtime):
    """Records how passes run: how many at once, and whether each was told it runs alone (wide)."""

    def __init__(self, streams: int):
        self.streams, self.wide = streams, []
        self.both_inside = threading.Barrier(streams, timeout=10)

    def logits(self, input_ids, attention_mask, wide=False):
        self.wide.append(wide)
        if not wide:
            self.both_inside.wait()  # passes with company: broken (an error) unless `streams` overlap
        return np.asarray(input_ids, dtype=np.float32)[:, :2]


def test_a_lone_request_runs_wide_and_concurrent_ones_side_by_side(tiny_model_dir):
    rt = CountingRuntime(streams=2)
    c = TextClassifier(*load_classifier(tiny_model_dir), runtime=rt)
    c.predict_proba(["혼자 온 리뷰"])
    assert rt.wide == [True]
    texts = [f"리뷰 {i:02d}" for i in range(64)]  # one length: two chunks of 32, one per worker
    assert c.predict_proba(texts).shape == (64, 2)
    assert rt.wide[1:] == [False, False]


def test_concurrent_callers_get_their_own_answers(clf):
    texts = ["정말 재밌었다", "시간 아깝다", "", "배우 연기가 좋았다 " * 20, "ㅋㅋ"] * 8
    expected = clf.predict_proba(texts)
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda k: clf.predict_proba(texts[k:] + texts[:k]), range(6)))
    for k, g in enumerate(got):
        np.testing.assert_allclose(g, np.roll(expected, -k, axis=0), atol=1e-6)
