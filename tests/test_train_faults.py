"""Training under faults, through the real `python -m train` command on a tiny model.

- SIGKILL mid-epoch (twice: in epoch 0 and in epoch 1), `--resume true`, and the run ends where an
  uninterrupted run of the same seed ends. Tolerance: metrics to 1e-5 (metrics.json keeps 5
  decimals), final weights to 1e-6. In practice both are bit-identical: the sampler resumes at the
  next unseen batch and the dropout RNG is restored (train/data.py, train/module.py).
- A kill during a checkpoint write never leaves a corrupt checkpoint, even with the system temp
  folder on another filesystem (where Lightning's own save falls back to a non-atomic copy).
- A read-only or full output folder, a corrupt checkpoint and a pickle-bearing checkpoint give one
  clear sentence and a non-zero exit, not a traceback.

The kills happen at a known step: a callback (added by a small driver around the real CLI) pauses
training at step N and the test SIGKILLs the paused process from outside. Checkpoint callbacks run
after it, so step N's checkpoint is not written: the resumed run must replay from the one before.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, make_tiny_model
from nsmc import loading
from nsmc.errors import UserError

pytestmark = pytest.mark.timeout(300)

# One thread per process: bit-reproducible CPU math, and two runs can share the 2 cores.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
EVERY = 5  # --checkpoint_every_n_steps; smoke.yaml trains 2 epochs of 22 steps (340 reviews / batch 16)
NOT_RESUMABLE = "your dataloader is not resumable"  # Lightning's warning for an inexact mid-epoch resume

# The real CLI, plus test-only faults chosen by environment variables.
DRIVER = textwrap.dedent("""
    import os, sys, time
    import lightning as L
    import train.trainer as T

    class PauseAt(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == int(os.environ["PAUSE_AT_STEP"]):
                open(os.environ["PAUSE_MARKER"], "w").close()
                time.sleep(600)  # the test kills us here

    if "PAUSE_AT_STEP" in os.environ:
        build = T.build_trainer
        T.build_trainer = lambda *a, callbacks=(), **k: build(*a, callbacks=[*callbacks, PauseAt()], **k)
    if "FAKE_FREE_BYTES" in os.environ:  # a nearly full disk
        free = int(os.environ["FAKE_FREE_BYTES"])
        T.shutil.disk_usage = lambda path: T.shutil._ntuple_diskusage(10**12, 10**12 - free, free)

    from train.__main__ import main
    main(sys.argv[1:])
""")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("base-model"), tiny_tokenizer)


def train_args(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["configs/smoke.yaml", "--pretrained_model_name", str(model_dir),
            "--downstream_model_dir", str(out), "--cache_dir", str(out.parent / "cache"),
            "--checkpoint_every_n_steps", str(EVERY), *extra]


def start(args: list[str], driver: bool = False, **env) -> subprocess.Popen:
    cmd = [sys.executable, "-c", DRIVER, *args] if driver else [sys.executable, "-m", "train", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env={**ENV, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def run_and_kill_at(step: int, args: list[str], tmp: Path) -> None:
    marker = tmp / f"paused-{step}"
    proc = start(args, driver=True, PAUSE_AT_STEP=str(step), PAUSE_MARKER=str(marker))
    deadline = time.time() + 120
    while not marker.exists():
        assert proc.poll() is None, f"training ended before step {step}:\n{finish(proc)[1][-3000:]}"
        assert time.time() < deadline, "training never reached the kill step"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    rc, log = finish(proc)
    assert rc == -signal.SIGKILL


def saved_step(path: Path) -> int:
    return loading.read_checkpoint(path)["global_step"]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return loading.read_checkpoint(path)["state_dict"]


@pytest.fixture(scope="module")
def runs(model_dir, tmp_path_factory):
    """An uninterrupted run and a run killed twice and resumed twice, side by side (one core each)."""
    tmp = tmp_path_factory.mktemp("runs")
    straight, killed = tmp / "straight", tmp / "killed"
    baseline = start(train_args(model_dir, straight))
    logs = {}

    run_and_kill_at(13, train_args(model_dir, killed), tmp)  # epoch 0, batch 13 of 22
    logs["after first kill"] = saved_step(killed / "checkpoints" / "last.ckpt")
    run_and_kill_at(31, train_args(model_dir, killed, "--resume", "true"), tmp)  # epoch 1, batch 9 of 22
    logs["after second kill"] = saved_step(killed / "checkpoints" / "last.ckpt")
    rc, logs["resume"] = finish(start(train_args(model_dir, killed, "--resume", "true")))
    assert rc == 0, logs["resume"][-3000:]
    rc, logs["straight"] = finish(baseline)
    assert rc == 0, logs["straight"][-3000:]
    return straight, killed, logs


def test_killed_runs_checkpointed_before_the_kill(runs):
    _, _, logs = runs
    # Killed at steps 13 and 31 before their own checkpoints: the last ones were steps 10 and 30.
    assert (logs["after first kill"], logs["after second kill"]) == (10, 30)


def test_resumed_run_ends_like_an_uninterrupted_one(runs):
    straight, killed, logs = runs
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a["global_step"] == b["global_step"] == 44
    for key in ("val_loss", "val_acc", "val_f1", "test_loss", "test_acc", "test_f1"):
        assert abs(a[key] - b[key]) <= 1e-5, (key, a[key], b[key])
    wa, wb = weights(straight / "checkpoints" / "last.ckpt"), weights(killed / "checkpoints" / "last.ckpt")
    assert wa.keys() == wb.keys()
    worst = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)
    assert worst <= 1e-6, f"final weights differ by up to {worst}"
    assert NOT_RESUMABLE not in logs["resume"]
    # and the exported model is complete
    assert (killed / "export" / "model.safetensors").is_file()
    assert (killed / "export" / "config.json").is_file()


def test_no_temporary_files_left(runs):
    for run in runs[:2]:
        assert not list((run / "checkpoints").glob(".*.tmp"))
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_corrupt_last_checkpoint_on_resume_is_a_clear_error(runs, model_dir, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(runs[0], out)
    last = out / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    rc, log = finish(start(train_args(model_dir, out, "--resume", "true")))
    assert rc != 0 and "--resume:" in log and "not a readable checkpoint" in log and "best.ckpt" in log
    assert "Traceback" not in log


# --- atomic checkpoint writes ---------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, torch
    from train.trainer import AtomicCheckpointIO
    io, path = AtomicCheckpointIO(), sys.argv[1]
    for i in range(10**6):
        # ~20 MB, so a kill often lands mid-write; every tensor holds the save number
        io.save_checkpoint({"state_dict": {"w": torch.full((5_000_000,), float(i))}, "global_step": i}, path)
        print(i, flush=True)
""")


def test_sigkill_during_checkpoint_writes_never_corrupts(tmp_path):
    """With TMPDIR on another filesystem (tmpfs), where Lightning's default save is a copy: the same
    loop with lightning's TorchCheckpointIO left a corrupt last.ckpt after 3 of 8 kills."""
    other_fs = Path("/dev/shm")
    if not other_fs.is_dir() or os.stat(other_fs).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the test's tmp folder")
    # Three writers at once (start-up, importing Lightning, is the slow part), killed at different moments.
    paths = [tmp_path / f"w{i}" / "last.ckpt" for i in range(3)]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(p)], cwd=ROOT,
                              env={**ENV, "TMPDIR": str(other_fs)}, stdout=subprocess.PIPE, text=True)
             for p in paths]
    for attempt, proc in enumerate(procs):
        for _ in range(1 + attempt):
            proc.stdout.readline()  # some complete saves first
        time.sleep(0.015 * attempt)
        proc.send_signal(signal.SIGKILL)
    for proc, path in zip(procs, paths):
        proc.wait()
        proc.stdout.close()
        ckpt = loading.read_checkpoint(path)  # raises UserError if the kill left a damaged file
        w = ckpt["state_dict"]["w"]
        assert bool((w == ckpt["global_step"]).all()), "a checkpoint mixing two saves"
        for stale in path.parent.glob(".*.tmp"):  # what a kill mid-write leaves: removed at the next start
            assert stale.name.startswith(".last.ckpt.")


def test_trainer_uses_atomic_checkpoints_and_clears_stale_temporaries(tmp_path):
    from train.config import TrainConfig
    from train.trainer import AtomicCheckpointIO, build_trainer

    cfg = TrainConfig(downstream_model_dir=str(tmp_path), accelerator="cpu", devices="1")
    stale = tmp_path / "checkpoints" / ".last.ckpt.abc123.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a checkpoint")
    trainer = build_trainer(cfg, monitor="val_acc", mode="max", max_epochs=1)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert not stale.exists()


# --- bad output folders ---------------------------------------------------------------------

@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write to. As root, permission bits do not stop writes: use the
    immutable attribute instead (skipped where chattr is not allowed)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if (shutil.which("chattr") is None
            or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode):
        pytest.skip("running as root without chattr +i: cannot make a read-only folder")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("sub", ["", "run"], ids=["the-folder", "a-folder-inside"])
def test_read_only_output_dir_fails_before_training(model_dir, read_only_dir, sub):
    out = read_only_dir / sub if sub else read_only_dir
    rc, log = finish(start(train_args(model_dir, out)), timeout=60)
    assert rc != 0
    assert "Cannot write to the output folder" in log and str(read_only_dir) in log
    assert "Traceback" not in log and "Epoch" not in log  # refused before the first epoch began


def test_full_disk_fails_before_training(model_dir, tmp_path):
    proc = start(train_args(model_dir, tmp_path / "run"), driver=True, FAKE_FREE_BYTES=str(100_000))
    rc, log = finish(proc, timeout=60)
    assert rc != 0
    assert "free under" in log and "Free some space or choose another output folder" in log
    assert "Traceback" not in log and "Epoch" not in log
    assert not (tmp_path / "run" / "checkpoints").exists()


# --- hostile or damaged checkpoints ---------------------------------------------------------

def run_export(ckpt: Path, out: Path) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "train.export", str(ckpt), str(out)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_export_of_a_corrupt_checkpoint_is_a_clear_error(runs, tmp_path, damage):
    good = (runs[0] / "checkpoints" / "best.ckpt").read_bytes()
    bad = tmp_path / "best.ckpt"
    bad.write_bytes(good[: len(good) // 3] if damage == "truncated" else os.urandom(4096))
    rc, log = run_export(bad, tmp_path / "export")
    assert rc != 0 and "error:" in log and "not a readable checkpoint" in log
    assert "Traceback" not in log
    assert not (tmp_path / "export").exists()


class Exploit:
    """Unpickling this runs a shell command: what a malicious .ckpt carries."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_bearing_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(2)}, "hyper_parameters": Exploit(marker)}, evil)
    with pytest.raises(UserError, match=r"Refused to load .*GLOBAL posix.system"):
        loading.read_checkpoint(evil)
    assert not marker.exists()
    rc, log = run_export(evil, tmp_path / "export")  # the CLI says the same, in one line
    assert rc != 0 and "Refused to load" in log and "Traceback" not in log
    assert not marker.exists()
