"""nsmc.batcher: requests merged into shared passes, big ones cut into chunks that let small ones
through, answers split back to their callers, bounds kept, a lone pass run wide."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from nsmc.batcher import Batcher, Busy, passes


class Recorder:
    """A forward pass that remembers each call's texts and `wide`, and can be held until released."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.wide: list[bool] = []
        self.entered = threading.Event()  # a worker is inside a pass (held there while the gate is shut)
        self.entries = threading.Semaphore(0)  # one release per pass entered
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, texts: list[str], wide: bool) -> np.ndarray:
        self.wide.append(wide)
        self.entered.set()
        self.entries.release()
        self.gate.wait()
        self.calls.append(list(texts))
        # A probability per text that identifies it: its length, so answers can be checked.
        lengths = np.array([len(t) for t in texts], dtype=np.float32)
        return np.stack([lengths, -lengths], axis=1)


def held_batcher(workers: int = 1, **kwargs) -> tuple[Recorder, Batcher, object]:
    """A batcher holding its first request ("held") inside the pass."""
    score = Recorder()
    score.gate.clear()
    batcher = Batcher(score, 2, workers=workers, **kwargs)
    held = batcher.submit(["held"])
    assert score.entered.wait(5)
    return score, batcher, held


def test_each_caller_gets_its_own_rows_in_order():
    batcher = Batcher(Recorder(), 2, workers=1, max_batch=32)
    requests = [["a" * k for k in range(i + 3, i, -1)] for i in range(1, 20)]  # each sorted longest first
    futures = [batcher.submit(texts) for texts in requests]
    for texts, future in zip(requests, futures):
        assert future.result(timeout=5)[:, 0].tolist() == [len(t) for t in texts]


def test_small_requests_waiting_together_share_one_pass_up_to_max_batch():
    score, batcher, held = held_batcher(max_batch=8)
    futures = [batcher.submit([f"r{i}", f"s{i}", f"t{i}"]) for i in range(6)]  # 18 texts waiting
    score.gate.set()
    for f in [held, *futures]:
        f.result(timeout=5)
    # Whole requests only, never more than 8 texts: 3 + 3, then 3 + 3, then 3 + 3.
    assert [len(c) for c in score.calls] == [1, 6, 6, 6]
    assert batcher.passes == 4


def test_a_long_text_waiting_gets_its_own_pass_rather_than_padding_short_ones():
    score, batcher, held = held_batcher(max_batch=8)
    futures = [batcher.submit(["a" * 4, "a" * 4]), batcher.submit(["b" * 100]), batcher.submit(["c" * 5])]
    score.gate.set()
    for f in [held, *futures]:
        f.result(timeout=5)
    # The two short ones share a pass; the long one, between them in line, is not padded into it.
    assert score.calls[1:] == [["a" * 4, "a" * 4, "c" * 5], ["b" * 100]]


def test_a_big_request_is_cut_and_a_small_one_goes_between_its_chunks():
    score, batcher, held = held_batcher(max_batch=4)
    big = batcher.submit([f"big{i:02d}" for i in range(40)])  # 10 chunks of 4
    small = batcher.submit(["small"])
    score.gate.set()
    assert big.result(timeout=5).shape == (40, 2) and small.result(timeout=5)[0, 0] == 5
    # held, big's first chunk, then the small request: not after all ten of big's chunks.
    assert score.calls[2] == ["small"]
    assert [len(c) for c in score.calls[1:2] + score.calls[3:]] == [4] * 10


def test_a_lone_pass_runs_wide_and_passes_with_company_do_not():
    score, batcher, held = held_batcher(workers=2)
    company = batcher.submit(["company"])  # taken by the second worker while "held" runs
    assert score.entries.acquire(timeout=5) and score.entries.acquire(timeout=5)  # both passes inside
    score.gate.set()
    held.result(timeout=5), company.result(timeout=5)
    batcher.submit(["alone"]).result(timeout=5)
    assert score.wide == [True, False, True]


def test_full_queue_refuses_instead_of_growing():
    score, batcher, held = held_batcher(max_batch=1, max_waiting=3)
    waiting = [batcher.submit([str(i)]) for i in range(3)]
    with pytest.raises(Busy, match="busy"):
        batcher.submit(["one too many"])
    score.gate.set()
    assert all(f.result(timeout=5).shape == (1, 2) for f in [held, *waiting])
    assert batcher.submit(["room again"]).result(timeout=5).shape == (1, 2)


def test_a_failing_pass_fails_its_requests_and_the_worker_goes_on():
    def score(texts, wide):
        if "boom" in texts:
            raise ValueError("bad batch")
        return np.ones((len(texts), 2), dtype=np.float32) / 2

    batcher = Batcher(score, 2, workers=1)
    with pytest.raises(ValueError, match="bad batch"):
        batcher.submit(["boom"]).result(timeout=5)
    assert batcher.submit(["fine"]).result(timeout=5).shape == (1, 2)


def test_a_cancelled_request_is_not_scored():
    score, batcher, held = held_batcher(max_batch=1)
    gone = batcher.submit(["gone"])
    assert gone.cancel()
    score.gate.set()
    held.result(timeout=5)
    batcher.submit(["after"]).result(timeout=5)
    assert ["gone"] not in score.calls


def test_workers_run_passes_side_by_side():
    both_inside = threading.Barrier(2, timeout=5)  # broken, and the test failed, unless two passes overlap

    def score(texts, wide):
        both_inside.wait()
        return np.zeros((len(texts), 2), dtype=np.float32)

    batcher = Batcher(score, 2, workers=2, max_batch=1)
    futures = [batcher.submit([str(i)]) for i in range(6)]
    assert all(f.result(timeout=10).shape == (1, 2) for f in futures)


@pytest.mark.parametrize("lengths", [[10] * 15 + [128], [5, 40, 12, 7, 30, 128, 3], list(range(1, 100)), [7],
                                     []])
def test_passes_cover_every_text_once_and_keep_padding_low(lengths):
    groups = passes(lengths, batch_size=16)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        assert len(g) <= 16
        assert len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 2 * sum(lengths[i] for i in g)


def test_a_long_text_gets_its_own_pass():
    """One 128-long text among fifteen 10-long ones would make every row pad to 128."""
    assert passes([10] * 15 + [128], batch_size=16) == [list(range(15)), [15]]
