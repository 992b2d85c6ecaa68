"""bench/load.py's clients against the real app: both APIs answer the whole mix (good, batch and
hostile requests) without an error, so the benchmark measures the app and not its own mistakes."""

from __future__ import annotations

import sys
from urllib.parse import urlparse

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import load  # noqa: E402


@pytest.mark.parametrize("api", ["gradio", "json"])
def test_every_kind_of_request_is_answered(app_server, api):
    url, proc = app_server
    texts = load.reviews(200)
    result = load.run_load(load.APIS[api], urlparse(url).port, proc.pid, texts,
                           clients=4, seconds=0, total=60, seed=7)
    assert result["errors"] == []
    assert result["requests"] >= 60
    assert {"single", "batch", "bad"} <= set(result["by_kind"])
    assert result["reviews"] > result["requests"]  # batches of 8-32 reviews were scored and counted


def test_a_wrong_answer_counts_as_an_error(app_server):
    """The JSON client checks what it gets: a batch answer missing a row is not 'ok'."""
    port = urlparse(app_server[0]).port
    api = load.JsonApi(port)
    assert api.batch(["재밌다", "지루하다"]) == (True, "")
    ok, detail = api.call({"texts": ["재밌다", "지루하다"]}, 3)
    assert not ok and detail.startswith("200")
    ok, detail = api.call({"nothing": 1}, 1)
    assert not ok and detail.startswith("422")
