"""Predict and explain with an exported model: the one path the app, evaluation and benchmarks share.

    clf = TextClassifier.load("models/nsmc-small")
    clf.predict_proba(["정말 재밌었다", "시간 아깝다"])  # np.ndarray (n, labels), in label_names order
    clf.explain("정말 재밌었다").highlights            # for gr.HighlightedText
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nsmc.batcher import Batcher
from nsmc.corpus import LABELS, as_text
from nsmc.encoding import pad_batch, truncating
from nsmc.loading import load_classifier
from nsmc.runtime import DEFAULT_RUNTIME, TorchRuntime, build_runtime, usable_cores

MAX_CHARS = 2000  # bounds tokenizer time on pasted novels; NSMC reviews are under 140 characters
MAX_WORDS = 32  # occlusion units; longer texts are grouped into this many spans
BATCH_SIZE = 32  # texts per forward pass
MAX_WAITING = 256  # requests in line before new ones are told to come back later
DISPLAY = {"negative": "부정 (negative)", "positive": "긍정 (positive)"}  # NSMC's labels only


def set_threads(n: int | None = None) -> int:
    """Torch: one intra-op thread per usable core (it runs one pass at a time), one inter-op thread."""
    n = n or usable_cores()
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before the first parallel op
        pass
    return n


def cap(text, max_chars: int = MAX_CHARS) -> tuple[str, bool]:
    """(text cut to max_chars, whether it was cut), before tokenizing: a 10 MB paste costs no more."""
    text = as_text(text)
    return (text[:max_chars], True) if len(text) > max_chars else (text, False)


def is_blank(text) -> bool:
    return not as_text(text).strip()


def rows(texts: list, probs: np.ndarray, labels: list[str], digits: int = 4) -> list[dict]:
    """One result row per text (upload tab, /predict_batch, JSON API): the text as scored, a
    probability per label, the top label and whether the text was cut. Blank texts: empty cells."""
    out = []
    for text, p in zip(map(as_text, texts), probs):
        blank = is_blank(text)
        row = {"document": cap(text)[0]}
        row.update({name: None if blank else round(float(x), digits) for name, x in zip(labels, p)})
        row["label"] = "" if blank else labels[int(p.argmax())]
        row["truncated"] = len(text) > MAX_CHARS
        out.append(row)
    return out


@dataclass
class Explanation:
    """Occlusion: how much the top label's probability drops when a word is left out."""

    label: str  # display name of the top label
    probs: dict[str, float]
    words: list[tuple[str, float]] = field(default_factory=list)  # (word, drop), in text order
    highlights: list[tuple[str, float | None]] = field(default_factory=list)  # gr.HighlightedText value
    truncated: bool = False

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(self.words, key=lambda w: w[1], reverse=True)


class TextClassifier:
    """A sequence classifier and its tokenizer, loaded once; every call goes through one Batcher."""

    def __init__(self, model, tokenizer, name: str = "model", metrics: dict | None = None, runtime=None,
                 folder: Path | None = None):
        self.model = model.eval()
        self.runtime = runtime or TorchRuntime(self.model)
        self.name, self.metrics, self.folder = name, metrics or {}, folder
        config = model.config
        names = [config.id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]
        if all(n.startswith("LABEL_") for n in names) and len(names) == len(LABELS):
            names = list(LABELS)  # a config saved without names: ours
        self.label_names = names
        self.is_nsmc = tuple(names) == LABELS
        self.labels = [DISPLAY[n] for n in names] if self.is_nsmc else names
        # The tokenizer's own limit when it has a real one (RoBERTa-style models reserve positions).
        limit = getattr(tokenizer, "model_max_length", None) or 10**9
        self.max_length = min(getattr(config, "max_position_embeddings", 512), limit)
        self._tok = truncating(tokenizer, self.max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.batcher = Batcher(self.forward, len(names), workers=self.runtime.streams, max_batch=BATCH_SIZE,
                               max_waiting=MAX_WAITING)

    @classmethod
    def load(cls, path: str | os.PathLike, base_model: str | None = None, runtime: str = DEFAULT_RUNTIME,
             log=print) -> "TextClassifier":
        """From an exported folder or a `.ckpt`, as float32 (float16 is slow and lossy on CPU). If an
        ONNX runtime cannot be built here, torch serves instead and `log` says why."""
        set_threads()
        model, tokenizer = load_classifier(path, base_model=base_model, dtype=torch.float32)
        try:
            backend = build_runtime(model, runtime, model_path=path, log=log)
        except (ImportError, RuntimeError, OSError) as e:
            if runtime in ("torch", "int8"):
                raise
            log(f"The {runtime} runtime is unavailable ({type(e).__name__}: {str(e)[:200]}); "
                "serving with torch.")
            backend = TorchRuntime(model)
        path = Path(path)
        folder = path if path.is_dir() else path.parent
        try:
            metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            metrics = {}
        name = path.parent.name if path.name == "export" else path.name  # runs/x/export is "x"
        return cls(model, tokenizer, name=name, metrics=metrics if isinstance(metrics, dict) else {},
                   runtime=backend, folder=folder)

    def describe(self) -> str:
        """One line for the page: which model, and how well it did on the test split."""
        acc = self.metrics.get("test_acc")
        if not isinstance(acc, (int, float)):
            return f"{self.name} · test accuracy not recorded · {self.runtime.name}"
        return f"{self.name} · test accuracy {acc / 100 if acc > 1 else acc:.1%} · {self.runtime.name}"

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch([cap(t)[0] for t in texts])]

    @torch.inference_mode()
    def forward(self, texts: list[str], wide: bool = False) -> np.ndarray:
        """One forward pass, padded to its own longest text; the Batcher decides `wide`."""
        batch = pad_batch(self.encode(texts), self.pad_id)
        return self.runtime.probs(batch["input_ids"], batch["attention_mask"], wide)

    def submit(self, texts: list) -> Future:
        """A future of the (n, labels) probabilities, for callers on an event loop. Raises Busy."""
        return self.batcher.submit([as_text(t) for t in texts])

    def predict_proba(self, texts: list) -> np.ndarray:
        """(n, labels) probabilities. Blank texts get a row too (scored as `[CLS] [SEP]`), so
        evaluation can zip them with labels."""
        return self.submit(texts).result()

    def predict(self, texts: list) -> list[dict[str, float]]:
        """{display label: probability} per text; {} for a blank one, to answer with a message."""
        probs = self.predict_proba(texts)
        return [{} if is_blank(t) else dict(zip(self.labels, map(float, p))) for t, p in zip(texts, probs)]

    def explain(self, text: str, max_words: int = MAX_WORDS) -> Explanation | None:
        """Occlusion: drop one word (or span) at a time and measure how far the top label's
        probability falls; all variants are scored together. None for a blank text."""
        text, truncated = cap(text)
        if is_blank(text):
            return None
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        if len(spans) > max_words:  # group neighbouring words into max_words units
            edges = np.linspace(0, len(spans), max_words + 1).astype(int)
            spans = [(spans[a][0], spans[b - 1][1]) for a, b in zip(edges[:-1], edges[1:])]
        probs = self.predict_proba([text] + [text[:s] + text[e:] for s, e in spans])
        top = int(np.argmax(probs[0]))
        drops = [float(probs[0, top] - p[top]) for p in probs[1:]]
        scale = max((abs(d) for d in drops), default=0.0) or 1.0  # the strongest word fully coloured
        highlights: list[tuple[str, float | None]] = []
        pos = 0
        for (s, e), d in zip(spans, drops):
            if s > pos:
                highlights.append((text[pos:s], None))
            highlights.append((text[s:e], round(d / scale, 4)))
            pos = e
        if pos < len(text):
            highlights.append((text[pos:], None))
        return Explanation(label=self.labels[top], probs=dict(zip(self.labels, map(float, probs[0]))),
                           words=[(text[s:e], d) for (s, e), d in zip(spans, drops)], highlights=highlights,
                           truncated=truncated)
