"""nsmc.inference: probabilities, hostile inputs, dynamic padding, and occlusion attribution."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from conftest import make_tiny_model
from nsmc.inference import MAX_CHARS, SentimentClassifier, cap, passes
from nsmc.loading import load_classifier
from nsmc.runtime import Runtime

POS, NEG = "긍정 (positive)", "부정 (negative)"


@pytest.fixture(scope="module")
def clf(tiny_model_dir):
    # The exact fp32 path: int8 quantizes activations per batch, so batched and single rows would
    # differ by rounding (tests/test_runtime.py checks the other runtimes against this one).
    return SentimentClassifier.load(tiny_model_dir, runtime="torch")


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


@pytest.mark.parametrize("text", ["😀🎬👍🏽", "\x00\x07\x1b[31m 좋다 \u200b\u202e", "\ud800 lone surrogate", "<script>alert(1)</script>", "ℌ𝔢𝔩𝔩𝔬 Ｆｕｌｌ"])
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
    clf = SentimentClassifier.load(_one_word_model(tmp_path / "m", tiny_tokenizer, trigger_id))
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


# --- forward passes: grouping and concurrency -------------------------------------------------


@pytest.mark.parametrize("lengths", [[10] * 15 + [128], [5, 40, 12, 7, 30, 128, 3], list(range(1, 100)), [7], []])
def test_passes_cover_every_sequence_once_and_keep_padding_low(lengths):
    groups = passes(lengths, batch_size=16)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        longest = max(lengths[i] for i in g)
        assert len(g) <= 16
        assert len(g) == 1 or len(g) * longest <= 2 * sum(lengths[i] for i in g)


def test_a_long_review_gets_its_own_pass():
    """One 128-token review among fifteen 10-token ones would make every row pad to 128."""
    assert passes([10] * 15 + [128], batch_size=16) == [list(range(15)), [15]]


class CountingRuntime(Runtime):
    """Records how many forward passes run at once."""

    def __init__(self, streams: int):
        self.streams, self.running, self.most = streams, 0, 0
        self.lock = threading.Lock()

    def logits(self, input_ids, attention_mask):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.02)
        with self.lock:
            self.running -= 1
        return np.asarray(input_ids, dtype=np.float32)[:, :2]


@pytest.mark.parametrize("streams", [1, 2])
def test_forward_passes_at_once_never_exceed_the_runtimes_streams(tiny_model_dir, streams):
    rt = CountingRuntime(streams)
    c = SentimentClassifier(*load_classifier(tiny_model_dir), runtime=rt)
    texts = [f"리뷰 {'아주 ' * (i % 7)}{i}" for i in range(40)]
    with ThreadPoolExecutor(4) as pool:  # four callers, each with several passes
        results = list(pool.map(lambda k: c.predict_proba(texts, batch_size=4), range(4)))
    assert rt.most == streams  # used every stream, and never more
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_concurrent_callers_get_their_own_answers(clf):
    texts = ["정말 재밌었다", "시간 아깝다", "", "배우 연기가 좋았다 " * 20, "ㅋㅋ"] * 8
    expected = clf.predict_proba(texts)
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda k: clf.predict_proba(texts[k:] + texts[:k]), range(6)))
    for k, g in enumerate(got):
        np.testing.assert_allclose(g, np.roll(expected, -k, axis=0), atol=1e-6)
