"""Micro-batching: requests from many callers merged into shared forward passes.

    batcher = Batcher(classifier.predict_proba, workers=classifier.runtime.streams)
    probs = batcher.submit(["정말 재밌었다"]).result()     # np.ndarray (1, num_labels)

Each worker thread takes the oldest waiting request, adds whatever else is already waiting (up to
`max_batch` texts), and scores them in one call. It never waits for more to arrive: an idle
server answers a lone review at once, and a busy one batches exactly the requests that queued up
while the previous pass ran. Futures make it usable from threads and, through
`asyncio.wrap_future`, from an event loop without tying up a thread per request.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Callable, Sequence

import numpy as np


class Busy(Exception):
    """More requests are waiting than `max_waiting`: the caller should answer "try again later"."""


class Batcher:
    def __init__(self, score: Callable[[list[str]], np.ndarray], workers: int = 1, max_batch: int = 32,
                 max_waiting: int = 256):
        self.score = score  # texts -> (n, labels) array; SentimentClassifier.predict_proba
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self._waiting: deque[tuple[list[str], Future]] = deque()
        self._ready = threading.Condition()
        self.passes = 0  # calls to `score` so far, for tests and benchmarks
        for i in range(workers):
            threading.Thread(target=self._work, name=f"nsmc-batcher-{i}", daemon=True).start()

    def submit(self, texts: Sequence[str]) -> Future:
        """A future of the (len(texts), labels) probabilities. Raises Busy when the queue is full."""
        future: Future = Future()
        texts = list(texts)
        with self._ready:
            if len(self._waiting) >= self.max_waiting:
                raise Busy(f"{len(self._waiting)} requests are already waiting")
            self._waiting.append((texts, future))
            self._ready.notify()
        return future

    def _take(self) -> list[tuple[list[str], Future]]:
        """The oldest request plus the ones behind it that still fit in `max_batch` texts."""
        with self._ready:
            while not self._waiting:
                self._ready.wait()
            taken = [self._waiting.popleft()]
            size = len(taken[0][0])
            while self._waiting and size + len(self._waiting[0][0]) <= self.max_batch:
                taken.append(self._waiting.popleft())
                size += len(taken[-1][0])
            return taken

    def _work(self) -> None:
        while True:
            # A request whose caller gave up (cancelled future) is dropped rather than scored.
            taken = [(texts, f) for texts, f in self._take() if f.set_running_or_notify_cancel()]
            if not taken:
                continue
            try:
                probs = self.score([t for texts, _ in taken for t in texts])
            except Exception as e:  # one bad call fails its own requests, never the worker
                for _, future in taken:
                    future.set_exception(e)
                continue
            with self._ready:
                self.passes += 1
            start = 0
            for texts, future in taken:
                future.set_result(probs[start : start + len(texts)])
                start += len(texts)
