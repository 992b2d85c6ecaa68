"""The one place that decides concurrency and batching, for the page, Gradio's API and the JSON API.

    batcher = Batcher(forward, workers=2)          # forward(texts, wide) -> (n, labels) probabilities
    probs = batcher.submit(["정말 재밌었다"]).result()

A request is sorted by length and cut into chunks of at most `max_batch` texts (see `passes`).
Workers (one per forward pass the runtime runs side by side) take one chunk at a time from the
request at the head of the line, which then goes to the back: a small request waits for at most one
chunk of a big one, never for all of it. Small requests waiting together share one pass. A pass
that runs while nothing else runs or waits gets every core (`wide`); otherwise one core each.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Callable, Sequence

import numpy as np

from nsmc.errors import UserError

TRIM_SECONDS = 1.0  # at most one hand-back of freed memory to the OS a second (~1 ms each)
MAX_WASTE = 2.0  # a pass is padded to its longest text: at most twice the real text (passes, merges)


class Busy(UserError):
    """More requests are waiting than `max_waiting`: the caller should answer "try again later"."""


def _malloc_trim() -> Callable[[], object]:
    """glibc keeps the memory that ever-changing tensor sizes free, in one arena per worker thread,
    so a server's memory grows with no live object leaking (bench/RESULTS.md, "Serving memory");
    `malloc_trim(0)` returns it. Elsewhere (macOS, musl) a no-op."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else None
    except (OSError, AttributeError):
        trim = None
    return (lambda: trim(0)) if trim else (lambda: None)


def pads_little(lengths: list[int]) -> bool:
    return len(lengths) * max(lengths, default=0) <= MAX_WASTE * sum(lengths)


def passes(lengths: list[int], batch_size: int, max_waste: float = MAX_WASTE) -> list[list[int]]:
    """Indices grouped into forward passes: sorted by length, at most `batch_size` a pass, and a new
    pass rather than one padded to more than `max_waste` times its real length."""
    groups: list[list[int]] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = lengths[i]  # the longest so far: the pass pads to it
        if not groups or len(groups[-1]) == batch_size or (len(groups[-1]) + 1) * n > max_waste * (real + n):
            groups.append([i])
            real = n
        else:
            groups[-1].append(i)
            real += n
    return groups


class _Request:
    def __init__(self, texts: list[str], chunks: list[list[int]], labels: int):
        self.texts, self.chunks, self.future = texts, deque(chunks), Future()
        self.left = len(chunks)  # chunks not answered yet
        self.started = False
        self.out = np.zeros((len(texts), labels), np.float32)


class Batcher:
    def __init__(self, forward: Callable[[list[str], bool], np.ndarray], labels: int, workers: int = 1,
                 max_batch: int = 32, max_waiting: int = 256):
        self.forward, self.labels = forward, labels
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self._line: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._running = 0
        self.passes = 0  # forward passes so far, for tests and benchmarks
        self._trim, self._trimmed = _malloc_trim(), time.monotonic()
        for i in range(workers):
            threading.Thread(target=self._work, name=f"nsmc-pass-{i}", daemon=True).start()

    def submit(self, texts: Sequence[str]) -> Future:
        """A future of the (len(texts), labels) probabilities. Raises Busy when the line is full."""
        texts = list(texts)
        request = _Request(texts, passes([len(t) for t in texts], self.max_batch), self.labels)
        if not texts:
            request.future.set_result(request.out)
            return request.future
        with self._ready:
            if len(self._line) >= self.max_waiting:
                raise Busy(f"The server is busy ({len(self._line)} requests waiting): try again in a second.")
            self._line.append(request)
            self._ready.notify()
        return request.future

    def _take(self) -> tuple[list[tuple[_Request, list[int]]], bool]:
        """The next chunk of the request at the head, plus whole small requests in line that fit in its pass
        without padding it to more than MAX_WASTE times its texts (a 100-character review padded beside
        ten short ones would cost more than its own pass)."""
        with self._ready:
            while True:
                while not self._line:
                    self._ready.wait()
                request = self._line.popleft()
                if not request.started and not request.future.set_running_or_notify_cancel():
                    continue  # its caller gave up before any of it ran
                request.started = True
                taken = [(request, request.chunks.popleft())]
                if request.chunks:
                    self._line.append(request)
                lengths = [len(request.texts[i]) for i in taken[0][1]]
                for nxt in list(self._line):  # whole small requests that pad little in this pass
                    if nxt.started or len(nxt.chunks) != 1:
                        continue
                    merged = lengths + [len(nxt.texts[i]) for i in nxt.chunks[0]]
                    if len(merged) > self.max_batch or not pads_little(merged):
                        continue
                    self._line.remove(nxt)
                    if nxt.future.set_running_or_notify_cancel():
                        nxt.started = True
                        taken.append((nxt, nxt.chunks.popleft()))
                        lengths = merged
                wide = self._running == 0 and not self._line
                if self._line:
                    self._ready.notify()  # more work: wake another worker
                self._running += 1
                return taken, wide

    def _work(self) -> None:
        while True:
            taken, wide = self._take()
            try:
                probs, error = self.forward([r.texts[i] for r, rows in taken for i in rows], wide), None
            except Exception as e:  # one bad pass fails its own requests, never the worker
                probs, error = None, e
            answered = []
            with self._ready:
                self._running -= 1
                self.passes += 1
                start = 0
                for request, rows in taken:
                    if error is not None:
                        if request in self._line:
                            self._line.remove(request)
                        answered.append(request)
                        continue
                    request.out[rows] = probs[start : start + len(rows)]
                    start += len(rows)
                    request.left -= 1
                    if request.left == 0:
                        answered.append(request)
            for request in answered:
                if request.future.done():
                    continue
                if error is None:
                    request.future.set_result(request.out)
                else:
                    request.future.set_exception(error)
            if time.monotonic() - self._trimmed > TRIM_SECONDS:
                self._trimmed = time.monotonic()
                self._trim()
