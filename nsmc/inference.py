"""Predict and explain sentiment with an exported model: the one code path that the app,
evaluation and benchmarks share. No Lightning and nothing from `train/` is imported here, so
serving stays light.

    from nsmc.inference import SentimentClassifier
    clf = SentimentClassifier.load("models/nsmc-small")
    clf.predict(["정말 재밌었다", "시간 아깝다"])   # [{"긍정 (positive)": 0.97, "부정 (negative)": 0.03}, ...]
    clf.predict_proba(texts)                        # np.ndarray (n, 2), columns in LABELS order
    clf.explain("정말 재밌었다").highlights        # for gr.HighlightedText
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nsmc.corpus import LABELS
from nsmc.encoding import backend, pad_batch
from nsmc.loading import load_classifier
from nsmc.runtime import DEFAULT_RUNTIME, TorchRuntime, build_runtime, usable_cores

MAX_CHARS = 2000  # NSMC reviews are < 140 chars; the cap bounds tokenizer CPU time on pasted novels
MAX_WORDS = 32  # occlusion units: NSMC reviews have ~5-20 words; longer texts are grouped into 32 spans, bounding the cost
BATCH_SIZE = 32  # sequences per forward pass when many texts come at once
MIN_PASS = 8  # no smaller passes than this just to spread a call over the streams
DISPLAY = {"negative": "부정 (negative)", "positive": "긍정 (positive)"}
TRIM_SECONDS = 1.0  # at most one hand-back of freed memory to the OS a second (see _malloc_trim): ~1 ms each


def _malloc_trim():
    """glibc keeps the memory that dynamic padding's ever-changing tensor sizes free, in many arenas
    (one per serving thread): a server's RSS grew from 612 MiB to 2.3 GiB over 10,000 requests, with no
    live objects leaking. `malloc_trim(0)` returns it; elsewhere (macOS, musl) this is a no-op."""
    if not sys.platform.startswith("linux"):
        return lambda: None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


_trim = _malloc_trim()


def set_threads(n: int | None = None) -> int:
    """Torch: one intra-op thread per usable core, one inter-op thread. The torch runtime runs one
    forward pass at a time, so this keeps all cores busy without oversubscribing them."""
    if not n:
        n = usable_cores()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before the first parallel op; then the default stays
        pass
    return n


def as_text(value) -> str:
    """Any input as a valid string: None -> "", non-strings -> str(), lone surrogates (which can
    arrive through JSON and make the Rust tokenizer raise) -> U+FFFD."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "replace").decode("utf-8")


def cap(text, max_chars: int = MAX_CHARS) -> tuple[str, bool]:
    """(text cut to max_chars, whether it was cut). Done before tokenizing, so a 10 MB paste
    costs no more than a 2,000-character one."""
    text = as_text(text)
    return (text[:max_chars], True) if len(text) > max_chars else (text, False)


def is_blank(text) -> bool:
    return not as_text(text).strip()


def passes(lengths: list[int], batch_size: int = BATCH_SIZE, max_waste: float = 2.0) -> list[list[int]]:
    """Indices of sequences grouped into forward passes: sorted by length, at most `batch_size` a
    pass, and a new pass rather than one padded to more than `max_waste` times its real tokens.
    One 128-token review among fifteen 10-token ones would otherwise make the pass about 5x slower
    than the two passes it becomes (every row padded to 128 tokens)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    real = 0
    for i in order:
        group = groups[-1] if groups else None
        n = lengths[i]  # the longest so far: the pass pads to it
        if group is None or len(group) == batch_size or (len(group) + 1) * n > max_waste * (real + n):
            groups.append([i])
            real = n
        else:
            group.append(i)
            real += n
    return groups


@dataclass
class Explanation:
    """Occlusion attributions: how much the predicted class's probability drops when a word is left out."""

    label: str  # display name of the predicted class
    probs: dict[str, float]
    words: list[tuple[str, float]] = field(default_factory=list)  # (word, drop in predicted prob), text order
    highlights: list[tuple[str, float | None]] = field(default_factory=list)  # gr.HighlightedText value
    truncated: bool = False

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(self.words, key=lambda w: w[1], reverse=True)


class SentimentClassifier:
    """A sequence classifier plus its tokenizer, loaded once, predicting without gradients."""

    def __init__(self, model, tokenizer, name: str = "model", metrics: dict | None = None, runtime=None):
        self.model = model.eval()
        self.runtime = runtime or TorchRuntime(self.model)  # nsmc.runtime: torch, int8, onnx, onnx-int8
        self.name = name
        self.metrics = metrics or {}
        config = model.config
        # Label names from the model's own config; a config saved without names falls back to ours.
        names = [config.id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]
        if all(n.startswith("LABEL_") for n in names) and len(names) == len(LABELS):
            names = list(LABELS)
        self.label_names = names
        self.labels = [DISPLAY.get(n, n) for n in names]
        # The tokenizer's own limit when it has a real one (RoBERTa-style models reserve positions).
        limit = getattr(tokenizer, "model_max_length", None) or 10**9
        self.max_length = min(getattr(config, "max_position_embeddings", 512), limit if limit < 10**6 else 10**9)
        # A private copy of the Rust tokenizer with truncation on and padding off: pad_batch pads.
        tok = backend(tokenizer)
        self._tok = tok.__class__.from_str(tok.to_str())
        self._tok.no_padding()
        self._tok.enable_truncation(self.max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._trimmed = time.monotonic()
        # At most `runtime.streams` forward passes at once, whichever threads ask (torch: one, as it
        # threads each pass over every core; ONNX: one per core). Taken per pass, not per call, so a
        # 1,000-review upload lets a single review through between its passes.
        self._slots = threading.BoundedSemaphore(self.runtime.streams)
        self._pool = ThreadPoolExecutor(self.runtime.streams, thread_name_prefix="nsmc-pass") if self.runtime.streams > 1 else None

    @classmethod
    def load(cls, path: str | os.PathLike, base_model: str | None = None, runtime: str = DEFAULT_RUNTIME,
             log=print) -> "SentimentClassifier":
        """From an exported folder or a `.ckpt`; weights always as float32 (exports may be float16,
        which is slow and lossy on CPU). Raises nsmc.errors.UserError with a fix on bad paths.
        `runtime`: the backend (nsmc.runtime); if an ONNX one cannot be built here (onnxruntime
        missing, export failing), the torch backend serves instead and `log` says why."""
        model, tokenizer = load_classifier(path, base_model=base_model, dtype=torch.float32)
        try:
            backend_ = build_runtime(model, runtime, model_path=path, log=log)
        except (ImportError, RuntimeError, OSError, ValueError) as e:
            if runtime not in ("torch", "int8") and not isinstance(e, ValueError):
                log(f"The {runtime} runtime is unavailable ({type(e).__name__}: {str(e)[:200]}); serving with torch.")
                backend_ = TorchRuntime(model)
            else:
                raise
        path = Path(path)
        metrics_file = (path if path.is_dir() else path.parent) / "metrics.json"
        try:
            metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            metrics = {}
        return cls(model, tokenizer, name=path.name, metrics=metrics if isinstance(metrics, dict) else {}, runtime=backend_)

    def describe(self) -> str:
        """One line for the page: which model, and how well it did on the test split."""
        acc = self.metrics.get("test_acc")
        if not isinstance(acc, (int, float)):
            return f"{self.name} · test accuracy not recorded · {self.runtime.name}"
        score = f"test accuracy {acc / 100 if acc > 1 else acc:.1%}"  # a fraction, or a percentage
        return f"{self.name} · {score} · {self.runtime.name}"

    # --- prediction -------------------------------------------------------------------------

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch([cap(t)[0] for t in texts])]

    @torch.inference_mode()
    def _forward(self, sequences: list[list[int]]) -> np.ndarray:
        batch = pad_batch(sequences, self.pad_id)  # one sequence: its own length, so no padding
        with self._slots:
            if time.monotonic() - self._trimmed > TRIM_SECONDS:
                _trim()
                self._trimmed = time.monotonic()
            return self.runtime.probs(batch["input_ids"], batch["attention_mask"])

    def probs_of_ids(self, sequences: list[list[int]], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Probabilities for token-id sequences, in forward passes that each pad only to their
        own longest member (dynamic padding; see `passes`)."""
        out = np.zeros((len(sequences), len(self.labels)), dtype=np.float32)
        # Big enough calls are cut into at least one pass per stream, so a lone caller uses every core.
        batch_size = min(batch_size, max(MIN_PASS, -(-len(sequences) // self.runtime.streams)))
        groups = passes([len(s) for s in sequences], batch_size)
        run = lambda rows: self._forward([sequences[i] for i in rows])  # noqa: E731
        # Several passes go side by side when the runtime allows; one pass runs right here.
        results = self._pool.map(run, groups) if self._pool and len(groups) > 1 else map(run, groups)
        for rows, probs in zip(groups, results):
            out[rows] = probs
        return out

    def predict_proba(self, texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """(n, num_labels) probabilities, columns in `label_names` order. Every text gets a row,
        blank ones included (they score as `[CLS] [SEP]`), so evaluation can zip with labels."""
        return self.probs_of_ids(self.encode(list(texts)), batch_size)

    def predict(self, texts: list[str]) -> list[dict[str, float]]:
        """{display label: probability} per text; {} for a blank text, which the caller should
        answer with a message rather than a made-up score."""
        probs = self.predict_proba(texts)
        return [{} if is_blank(t) else dict(zip(self.labels, map(float, p))) for t, p in zip(texts, probs)]

    # --- explanation ------------------------------------------------------------------------

    def explain(self, text: str, max_words: int = MAX_WORDS) -> Explanation | None:
        """Occlusion: drop one word (or span) at a time and measure how far the predicted class's
        probability falls. The full text and all its variants go through one padded forward
        pass per stream, so for a typical 10-20-word review this costs a small multiple of one
        prediction.
        None for a blank text."""
        text, truncated = cap(text)
        if is_blank(text):
            return None
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        if len(spans) > max_words:  # group neighbouring words so there are at most max_words units
            edges = np.linspace(0, len(spans), max_words + 1).astype(int)
            spans = [(spans[a][0], spans[b - 1][1]) for a, b in zip(edges[:-1], edges[1:])]
        variants = [text] + [text[:s] + text[e:] for s, e in spans]
        # Variants are all about as long as the text: one pass per stream, side by side.
        probs = self.probs_of_ids(self.encode(variants), batch_size=-(-len(variants) // self.runtime.streams))
        top = int(np.argmax(probs[0]))
        drops = [float(probs[0, top] - p[top]) for p in probs[1:]]
        words = [(text[s:e], d) for (s, e), d in zip(spans, drops)]
        # Scale so the strongest word is fully coloured; sign: + pushed towards the verdict.
        scale = max((abs(d) for d in drops), default=0.0) or 1.0
        highlights: list[tuple[str, float | None]] = []
        pos = 0
        for (s, e), d in zip(spans, drops):
            if s > pos:
                highlights.append((text[pos:s], None))
            highlights.append((text[s:e], round(d / scale, 4)))
            pos = e
        if pos < len(text):
            highlights.append((text[pos:], None))
        return Explanation(
            label=self.labels[top], probs=dict(zip(self.labels, map(float, probs[0]))),
            words=words, highlights=highlights, truncated=truncated,
        )
