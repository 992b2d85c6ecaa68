"""Property-based tests of prediction: any Unicode in, never an exception, probabilities that sum to 1.

Text is drawn from all of Unicode, surrogates included (they arrive through JSON and make the Rust
tokenizer raise unless cleaned), plus pieces that stress tokenizers: combining marks, zero-width and
bidi controls, NUL, conjoining jamo, emoji sequences, very long runs.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nsmc.inference import MAX_CHARS, TextClassifier, cap, is_blank

SETTINGS = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 40)), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

PIECES = ["\x00", "\ud800", "\udfff", "\u200b", "\u200d", "\u202e", "\ufeff", "\u0301" * 50,
          "\u1100\u1161\u11a8", "👍🏽", "👨‍👩‍👧", "[CLS]", "[SEP]", "[MASK]", "##", "\t", "\r\n", " " * 100,
          "<script>alert(1)</script>", "정말 재밌다"]
text = st.one_of(
    st.text(st.characters(codec=None), max_size=200),  # any code point, surrogates too
    st.lists(st.sampled_from(PIECES), max_size=30).map("".join),
    st.builds(lambda piece, n: piece * n, st.sampled_from(PIECES), st.integers(1, 3000)),
)


@pytest.fixture(scope="module")
def clf(tiny_model_dir) -> TextClassifier:
    return TextClassifier.load(tiny_model_dir, runtime="torch")


def check_probs(probs: np.ndarray, n: int) -> None:
    assert probs.shape == (n, 2)
    assert np.isfinite(probs).all() and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@SETTINGS
@given(texts=st.lists(text, min_size=1, max_size=6))
@example(texts=["\ud83d", "a\udc00b", ""])  # lone surrogates, an empty review
@example(texts=["가" * (MAX_CHARS * 5)])
def test_predict_proba_any_text(clf, texts):
    check_probs(clf.predict_proba(texts), len(texts))


@SETTINGS
@given(texts=st.lists(text, min_size=1, max_size=4))
def test_predict_any_text(clf, texts):
    out = clf.predict(texts)
    assert len(out) == len(texts)
    for t, probs in zip(texts, out):
        if is_blank(t):
            assert probs == {}
        else:
            assert set(probs) == set(clf.labels)
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 40)) // 2, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(t=text)
def test_explain_any_text(clf, t):
    result = clf.explain(t)
    if result is None:
        assert is_blank(t)
        return
    assert sum(result.probs.values()) == pytest.approx(1.0, abs=1e-5)
    # The highlighted pieces put back together are the (cleaned, capped) input: nothing lost or invented.
    assert "".join(piece for piece, _ in result.highlights) == cap(t)[0]


def test_non_string_inputs(clf):
    check_probs(clf.predict_proba([None, 123, 4.5, ["a"], {"b": 1}, b"bytes"]), 6)
