"""nsmc.batcher: requests merged into shared calls, answers split back to their callers, bounds kept."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nsmc.batcher import Batcher, Busy


class Recorder:
    """A scorer that remembers each call's texts and can be held until released."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.entered = threading.Event()  # a worker is inside a call (and held there while the gate is shut)
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.entered.set()
        self.gate.wait()
        self.calls.append(list(texts))
        # A probability per text that identifies it: its length, so answers can be checked.
        lengths = np.array([len(t) for t in texts], dtype=np.float32)
        return np.stack([lengths, -lengths], axis=1)


def test_each_caller_gets_its_own_rows():
    score = Recorder()
    batcher = Batcher(score, workers=1, max_batch=32)
    requests = [["a" * k for k in range(i, i + 3)] for i in range(1, 20)]
    futures = [batcher.submit(texts) for texts in requests]
    for texts, future in zip(requests, futures):
        assert future.result(timeout=5)[:, 0].tolist() == [len(t) for t in texts]


def test_requests_waiting_together_share_one_call_up_to_max_batch():
    score = Recorder()
    score.gate.clear()  # hold the worker on the first request while the rest queue up
    batcher = Batcher(score, workers=1, max_batch=8)
    first = batcher.submit(["x"])
    assert score.entered.wait(5)  # the worker holds the first request
    futures = [batcher.submit([f"r{i}", f"s{i}", f"t{i}"]) for i in range(6)]  # 18 texts waiting
    score.gate.set()
    for f in [first, *futures]:
        f.result(timeout=5)
    assert score.calls[0] == ["x"]
    # Whole requests only, never more than 8 texts: 3 + 3, then 3 + 3, then 3 + 3.
    assert [len(c) for c in score.calls[1:]] == [6, 6, 6]
    assert batcher.passes == 4


def test_a_request_bigger_than_max_batch_runs_alone():
    score = Recorder()
    batcher = Batcher(score, workers=1, max_batch=4)
    assert batcher.submit([str(i) for i in range(10)]).result(timeout=5).shape == (10, 2)
    assert len(score.calls[0]) == 10


def test_full_queue_refuses_instead_of_growing():
    score = Recorder()
    score.gate.clear()
    batcher = Batcher(score, workers=1, max_batch=1, max_waiting=3)
    held = batcher.submit(["held"])  # taken by the worker, waiting at the gate
    assert score.entered.wait(5)  # the worker holds the first request
    waiting = [batcher.submit([str(i)]) for i in range(3)]
    with pytest.raises(Busy):
        batcher.submit(["one too many"])
    score.gate.set()
    assert all(f.result(timeout=5).shape == (1, 2) for f in [held, *waiting])
    assert batcher.submit(["room again"]).result(timeout=5).shape == (1, 2)


def test_a_failing_call_fails_its_requests_and_the_worker_goes_on():
    def score(texts):
        if "boom" in texts:
            raise ValueError("bad batch")
        return np.ones((len(texts), 2), dtype=np.float32) / 2

    batcher = Batcher(score, workers=1)
    with pytest.raises(ValueError, match="bad batch"):
        batcher.submit(["boom"]).result(timeout=5)
    assert batcher.submit(["fine"]).result(timeout=5).shape == (1, 2)


def test_a_cancelled_request_is_not_scored():
    score = Recorder()
    score.gate.clear()
    batcher = Batcher(score, workers=1, max_batch=1)
    held = batcher.submit(["held"])
    assert score.entered.wait(5)  # the worker holds the first request
    gone = batcher.submit(["gone"])
    assert gone.cancel()
    score.gate.set()
    held.result(timeout=5)
    batcher.submit(["after"]).result(timeout=5)
    assert ["gone"] not in score.calls


def test_workers_score_side_by_side():
    running, most, lock = [0], [0], threading.Lock()

    def score(texts):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)  # long enough for the other worker to start its own call
        with lock:
            running[0] -= 1
        return np.zeros((len(texts), 2), dtype=np.float32)

    batcher = Batcher(score, workers=2, max_batch=1)
    futures = [batcher.submit([str(i)]) for i in range(6)]
    for f in futures:
        f.result(timeout=5)
    assert most[0] == 2
