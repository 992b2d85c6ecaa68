"""What `make` installs and what the README tells a new user: the online route's Korpora imports with its
own dependencies (never the `dataclasses` backport), and the README's paths are those the presets write."""

from __future__ import annotations

import importlib.metadata
import re

import yaml

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def requirement_names(path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(path.parent / line[3:].strip())
        elif line:
            names.add(re.split(r"[<>=!~\[; ]", line)[0].lower().replace("_", "-"))
    return names


def test_korpora_imports_in_the_training_environment():
    from Korpora import Korpora  # raised "No module named 'xlrd'" when its dependencies were left out

    assert callable(Korpora.fetch)


def test_korpora_dependencies_are_installed_by_the_requirements_except_the_dataclasses_backport():
    needed = {re.split(r"[<>=!~ (;]", r)[0].lower() for r in importlib.metadata.requires("Korpora")}
    assert "dataclasses" in needed  # what --no-deps keeps out: it shadows the standard library's
    installed = requirement_names(ROOT / "requirements-train.txt")
    assert needed - {"dataclasses"} <= installed
    assert "dataclasses" not in installed
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements-train.txt" in makefile and "--no-deps Korpora==0.2.0" in makefile
    for line in ("pip install -r requirements-train.txt", "pip install --no-deps Korpora==0.2.0"):
        assert line in README


def test_readme_says_to_use_the_venv_after_make():
    after_make = README[README.index("make test   #"):README.index("## Results")]
    assert ". .venv/bin/activate" in after_make and ".venv/bin/python" in after_make


def test_readme_run_paths_are_what_the_presets_write():
    from train.evaluate import default_out

    written = set()
    for preset in (ROOT / "configs").glob("*.yaml"):
        settings = yaml.safe_load(preset.read_text()) or {}
        written |= {settings[k] for k in ("downstream_model_dir", "output_dir") if k in settings}
    # named in the command
    written |= set(re.findall(r"--(?:downstream[_-]model[_-]dir|out) (runs/[\w.-]+)", README))
    written.add(str(default_out("models/x", "test", record=False).parent))  # train.evaluate's runs/eval
    used = set(re.findall(r"\b(runs/[\w.-]+)", README))
    assert used and used <= written, used - written


def test_readme_badge_opens_the_notebook_and_names_its_placeholder():
    badge = "https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/train_and_serve.ipynb"
    assert badge in README and (ROOT / "notebooks" / "train_and_serve.ipynb").is_file()
    assert "OWNER/REPO" in (ROOT / "notebooks" / "train_and_serve.ipynb").read_text()


def test_readme_training_commands_parse_as_written():
    """`python -m train configs/kcbert.yaml --resume` was an argparse error: flags need no `true`."""
    from train.config import PretrainConfig, TrainConfig, parse

    commands = re.findall(r"^python -m (train|train\.pretrain) (configs/\S+.*?)(?:\s+#.*)?$", README, re.M)
    assert len(commands) >= 5
    for module, args in commands:
        argv = args.replace("configs/", f"{ROOT}/configs/").split()
        parse(TrainConfig if module == "train" else PretrainConfig, argv)
    assert parse(TrainConfig, [f"{ROOT}/configs/kcbert.yaml", "--resume"]).resume is True
