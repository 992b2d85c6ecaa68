"""nsmc.page: NSMC's page for an NSMC model, a neutral one from the model folder otherwise, and the banner."""

from __future__ import annotations

import json
from types import SimpleNamespace

from nsmc.page import NSMC, banner, page_for


def model(folder, labels=("sad", "calm", "happy")):
    return SimpleNamespace(is_nsmc=list(labels) == ["negative", "positive"], labels=list(labels),
                           name="moods", folder=folder)


def test_an_nsmc_model_keeps_the_korean_page(tmp_path):
    assert page_for(model(tmp_path, ["negative", "positive"])) == NSMC
    assert page_for(model(tmp_path, ["negative", "positive"]), title="내 모델").title == "내 모델"


def test_another_model_takes_its_title_and_examples_from_its_folder(tmp_path):
    card = "---\nlicense: mit\n---\n# Moods of diaries\n\ntext\n"
    (tmp_path / "README.md").write_text(card, encoding="utf-8")
    (tmp_path / "examples.json").write_text(json.dumps(["좋은 하루", 3, "  ", "비 오는 날"]),
                                            encoding="utf-8")
    page = page_for(model(tmp_path))
    assert page.title == "Moods of diaries" and "sad, calm, happy" in page.intro
    assert page.examples == ["좋은 하루", "비 오는 날"]  # strings only, blanks dropped
    assert page_for(model(tmp_path), title="Mine").title == "Mine"


def test_without_a_card_or_examples_the_folder_name_and_none(tmp_path):
    (tmp_path / "examples.json").write_text('{"not": "a list"}', encoding="utf-8")
    page = page_for(model(tmp_path))
    assert page.title == "moods" and page.examples == []


def test_the_banner_says_how_to_share_with_the_apps_own_flag():
    assert "--share" in banner("m", "http://127.0.0.1:7860/", False, None, None)
    assert "share=True" not in banner("m", "http://127.0.0.1:7860/", False, None, None)
    assert "--auth" in banner("m", "u", True, "https://x.gradio.live", None)
    assert "could not be created" in banner("m", "u", True, None, ("me", "pw"))
