"""The encoded-data cache under faults: damaged files are detected and rebuilt, writes are atomic,
and nothing in a cache file can make the loader unpickle."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsmc.encoding import Encoded, encode, encode_file, load_encoded, save_encoded

ROOT = Path(__file__).resolve().parents[1]


def same(a: Encoded, b: Encoded) -> bool:
    pairs = ((a.ids, b.ids), (a.offsets, b.offsets), (a.labels, b.labels))
    return all(np.array_equal(x, y) for x, y in pairs)


@pytest.fixture(scope="module")
def encoded(tiny_tokenizer) -> Encoded:
    return encode(["정말 재밌었다", "시간 아깝다", "", "배우들 연기가 좋았어요 " * 5], tiny_tokenizer, 32,
                  labels=[1, 0, 1, 0])


@pytest.fixture(scope="module")
def cache_bytes(encoded, tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("cache") / "c.npz"
    save_encoded(encoded, path)
    return path.read_bytes()


def test_round_trip(encoded, tmp_path):
    save_encoded(encoded, tmp_path / "c.npz")
    assert same(load_encoded(tmp_path / "c.npz"), encoded)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "missing_array", "inconsistent_offsets"])
def test_damaged_cache_is_detected(encoded, cache_bytes, tmp_path, damage):
    path = tmp_path / "c.npz"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(cache_bytes[: len(cache_bytes) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(cache_bytes)))
    elif damage == "missing_array":
        np.savez(path, ids=encoded.ids, offsets=encoded.offsets)
    else:
        np.savez(path, ids=encoded.ids, offsets=encoded.offsets[::-1].copy(), labels=encoded.labels)
    assert load_encoded(path) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_is_caught_or_harmless(encoded, cache_bytes, tmp_path, data):
    """One corrupted byte anywhere: the loader returns None or the original arrays, never wrong ones
    (zip CRCs cover the array data; the header checks cover the rest)."""
    pos = data.draw(st.integers(0, len(cache_bytes) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = bytearray(cache_bytes)
    damaged[pos] ^= flip
    path = tmp_path / "c.npz"
    path.write_bytes(bytes(damaged))
    loaded = load_encoded(path)
    assert loaded is None or same(loaded, encoded)


class Boom:
    """Unpickling this would run code: the loader must never do it."""

    def __reduce__(self):
        return (Path(os.environ["BOOM_FILE"]).touch, ())


def test_cache_with_pickled_objects_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOM_FILE", str(tmp_path / "ran"))
    objects = np.array([Boom()], dtype=object)
    np.savez(tmp_path / "c.npz", ids=objects, offsets=np.array([0, 1]), labels=np.array([1]))
    assert load_encoded(tmp_path / "c.npz") is None
    assert not (tmp_path / "ran").exists()


def test_damaged_cache_is_rebuilt_by_encode_file(tiny_tokenizer, fixtures_dir, tmp_path):
    logs: list[str] = []
    first = encode_file(fixtures_dir / "ratings_test.txt", tiny_tokenizer, 64, tmp_path, log=logs.append)
    (cache,) = tmp_path.glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:100])  # e.g. a disk that filled up under an older version
    again = encode_file(fixtures_dir / "ratings_test.txt", tiny_tokenizer, 64, tmp_path, log=logs.append)
    assert same(again, first)
    assert any("damaged" in line for line in logs)
    assert same(load_encoded(cache), first)  # and the good cache is back on disk
    logs.clear()
    encode_file(fixtures_dir / "ratings_test.txt", tiny_tokenizer, 64, tmp_path, log=logs.append)
    assert any("encoded earlier" in line for line in logs)


def test_failed_write_keeps_the_old_cache(encoded, tmp_path, monkeypatch):
    """An exception half-way through writing (disk full, say) leaves the previous file intact and
    no temporary file behind."""
    path = tmp_path / "c.npz"
    save_encoded(encoded, path)
    before = path.read_bytes()

    def half_then_fail(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(OSError):
        save_encoded(Encoded(encoded.ids[:1], np.array([0, 1]), encoded.labels[:1]), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


WRITER = textwrap.dedent("""
    import sys, numpy as np
    from pathlib import Path
    from nsmc.encoding import Encoded, save_encoded
    n = 400_000  # a few MB per write, so a kill often lands mid-write
    path = Path(sys.argv[1])
    for i in range(1_000_000):
        ids = np.full(n, i % 1000, dtype=np.int32)
        save_encoded(Encoded(ids, np.array([0, n]), np.array([i % 2])), path)
        print(i, flush=True)
""")


def test_sigkill_during_writes_never_leaves_a_corrupt_cache(tmp_path):
    path = tmp_path / "c.npz"
    for attempt in range(5):  # kill at different moments
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE,
                                text=True)
        for _ in range(2 + attempt):
            proc.stdout.readline()  # a couple of complete writes
        time.sleep(0.003 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        loaded = load_encoded(path)
        assert loaded is not None, "a kill left a corrupt cache behind"
        assert len(np.unique(loaded.ids)) == 1  # one whole write, not two half ones
