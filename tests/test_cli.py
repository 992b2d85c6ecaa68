"""nsmc/cli.py: every command ends a user's mistake in a short message and exit status 2, and leaves no
half-made run folder; the messages of the mistakes a new user makes first (no corpus, no network, the
smoke preset before its base model exists)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, make_tiny_model
from nsmc.cli import EXIT_USER_ERROR
from nsmc.errors import UserError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
# No network, whatever the machine has: urllib (Korpora's download) goes through a proxy that refuses.
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "no_proxy": "",
           "NO_PROXY": ""}


def cli(*args, cwd=ROOT, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=cwd,
                          env={**ENV, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                          timeout=300)


def assert_user_error(proc, *needles):
    assert proc.returncode == EXIT_USER_ERROR, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory, tiny_tokenizer):
    return make_tiny_model(tmp_path_factory.mktemp("base"), tiny_tokenizer)


# `python -m train`: the smoke-preset and Korpora tests below.
@pytest.mark.parametrize("command", ["train.pretrain", "train.pretrain --tokenizer", "train.evaluate",
                                     "train.export", "train.vocab"])
def test_every_command_ends_a_mistake_in_one_message(command, tmp_path):
    missing = tmp_path / "missing"
    args = {
        "train.pretrain": ["configs/pretrain-smoke.yaml", "--texts", missing / "reviews.txt",
                           "--output_dir", tmp_path / "o"],
        # a given vocabulary skips the vocabulary step: the texts are still checked before encoding
        "train.pretrain --tokenizer": ["configs/pretrain-smoke.yaml", "--texts", missing / "reviews.txt",
                                       "--tokenizer", "models/nsmc-small", "--output_dir", tmp_path / "o"],
        "train.evaluate": [missing, "--corpus-dir", "tests/fixtures"],
        "train.export": [missing / "best.ckpt", tmp_path / "o"],
        "train.vocab": [tmp_path / "o", missing / "reviews.txt"],
    }[command]
    assert_user_error(cli(command.split()[0], *args), "error: ", str(missing))
    assert not (tmp_path / "o").exists()  # nothing half-made left behind


def test_a_run_folder_that_was_there_is_kept_and_a_run_with_checkpoints_is_named(tmp_path, capsys):
    from nsmc.cli import command_errors

    kept, trained = tmp_path / "kept", tmp_path / "trained"
    (kept / "checkpoints").mkdir(parents=True)
    (kept / "checkpoints" / "last.ckpt").write_bytes(b"")  # e.g. the damaged checkpoint --resume refused
    with pytest.raises(SystemExit) as exit_info:
        with command_errors() as outputs:
            outputs.watch(kept)
            outputs.watch(trained)
            (trained / "checkpoints").mkdir(parents=True)
            (trained / "checkpoints" / "last.ckpt").write_bytes(b"")
            raise UserError("the test file is missing")
    assert exit_info.value.code == EXIT_USER_ERROR
    assert (kept / "checkpoints" / "last.ckpt").is_file()
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert capsys.readouterr().err.splitlines() == [
        "error: the test file is missing",
        f"The run so far is in {trained}: the same command with --resume continues it."]


def test_an_interrupted_run_says_how_to_continue_and_an_empty_new_one_goes(tmp_path, capsys):
    from nsmc.cli import EXIT_INTERRUPTED, command_errors

    resumed, fresh = tmp_path / "resumed", tmp_path / "fresh"
    (resumed / "checkpoints").mkdir(parents=True)
    (resumed / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        with command_errors() as outputs:
            outputs.watch(resumed)
            outputs.watch(fresh)
            (fresh / "logs").mkdir(parents=True)  # Ctrl-C while the data was still being encoded
            raise KeyboardInterrupt
    assert exit_info.value.code == EXIT_INTERRUPTED and not fresh.exists()
    assert capsys.readouterr().err.strip() == (
        f"interrupted. The run so far is in {resumed}: the same command with --resume continues it.")


def test_smoke_preset_before_its_base_model_says_which_command_makes_it(tmp_path):
    """Run from a folder without runs/pretrain-smoke (a fresh clone), not a Hub download hint."""
    proc = cli("train", ROOT / "configs" / "smoke.yaml", "--downstream_model_dir", tmp_path / "o",
               cwd=tmp_path)
    assert_user_error(proc, "python -m train.pretrain configs/pretrain-smoke.yaml", "Run that first")
    assert "hf download" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_korpora_download_offline_names_the_cause_and_the_corpus_dir_fix(base_model, tmp_path):
    """The real Korpora.fetch("nsmc") path, with the network refused: Korpora must import (its
    dependencies installed), and its failure must read as one paragraph. The run folder was made
    before the download failed: it goes again."""
    out = tmp_path / "run"
    proc = cli("train", "configs/kcbert.yaml", "--pretrained_model_name", base_model, "--accelerator", "cpu",
               "--downstream_corpus_root_dir", tmp_path / "Korpora", "--downstream_model_dir", out,
               "--cache_dir", tmp_path / "cache", **OFFLINE)
    assert_user_error(proc, "Could not download NSMC with Korpora", "URLError", "--corpus_dir DIR")
    assert "needs Korpora" not in proc.stderr
    assert not out.exists()


def test_korpora_missing_a_dependency_names_it_and_the_install(monkeypatch, tmp_path):
    from nsmc import corpus

    for name in [m for m in sys.modules if m == "Korpora" or m.startswith("Korpora.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "xlrd", None)  # `import xlrd` raises ImportError
    fix = r"xlrd.*requirements-train\.txt.*--no-deps Korpora==0\.2\.0.*--corpus_dir"
    with pytest.raises(UserError, match=fix):
        corpus.download(tmp_path)
