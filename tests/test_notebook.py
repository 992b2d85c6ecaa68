"""notebooks/train_and_serve.ipynb runs from top to bottom: on a CPU, with NSMC_NOTEBOOK_SMOKE=1 (the
smoke presets, no installs, no app launch), in a real Jupyter kernel, in a scratch folder that links to
the repository's code, so its runs/ and caches do not land in the checkout."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import ROOT

nbclient = pytest.importorskip("nbclient", reason="nbclient is in requirements-train.txt")
nbformat = pytest.importorskip("nbformat", reason="nbformat is in requirements-train.txt")

NOTEBOOK = ROOT / "notebooks" / "train_and_serve.ipynb"


def test_notebook_runs_on_cpu_with_the_smoke_presets(tmp_path, monkeypatch):
    for name in ("configs", "tests", "train", "nsmc", "app.py"):
        (tmp_path / name).symlink_to(ROOT / name)
    # The kernel and its `!python ...` commands run in this interpreter's environment.
    venv_bin = os.path.dirname(os.path.abspath(sys.executable))
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("NSMC_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a tiny model: threads would only contend
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = "\n".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "Traceback" not in outputs and "error:" not in outputs, outputs[-3000:]
    run = tmp_path / "runs" / "smoke"
    assert json.loads((run / "metrics.json").read_text())["test_n"] == 120  # trained and tested
    assert json.loads((run / "eval-test" / "report.json").read_text())["n"] == 120  # evaluated
    assert (tmp_path / "runs" / "smoke-fp16" / "model.safetensors").is_file()  # exported
    assert not (tmp_path / "nsmc-sentiment").exists()  # no clone, no installs
