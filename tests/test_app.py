"""The real app.py server on 127.0.0.1, called the way users call it: with gradio_client."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from app_server import ROOT, app_env
from nsmc.cli import EXIT_USER_ERROR

POS, NEG = "긍정 (positive)", "부정 (negative)"


@pytest.fixture(scope="module")
def server(app_server):
    return app_server


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False)


def confidences(result: dict) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in result["confidences"]}


def assert_probabilities(result: dict) -> None:
    probs = confidences(result)
    assert set(probs) == {POS, NEG}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert result["label"] == max(probs, key=probs.get)


def test_endpoints_are_named(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/predict", "/predict_batch", "/explain", "/predict_file"} <= names


def test_single_review(client):
    assert_probabilities(client.predict("배우들 연기가 정말 좋았어요", api_name="/predict"))


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_and_blank_get_a_message(client, text):
    result = client.predict(text, api_name="/predict")
    assert result["confidences"] is None and "리뷰를 입력해 주세요" in result["label"]
    highlights, note = client.predict(text, api_name="/explain")
    assert highlights is None and "please type a review" in note


def test_100k_characters_truncated_and_said_so(client):
    text = "정말 재밌다 " * 14_286  # 100,002 characters
    assert_probabilities(client.predict(text, api_name="/predict"))
    highlights, note = client.predict(text, api_name="/explain")
    assert "2,000" in note
    assert sum(len(h["token"]) for h in highlights) == 2000


def test_emoji_and_markup_come_back_as_text(client):
    assert_probabilities(client.predict("최고예요 😍🎬👍🏽", api_name="/predict"))
    highlights, note = client.predict("<script>alert(1)</script> 좋다", api_name="/explain")
    assert highlights[0]["token"] == "<script>alert(1)</script>" and note == ""


@pytest.mark.parametrize("value", [12345, {"not": "text"}, ["a", "b"]])
def test_non_string_through_the_api(client, value):
    assert_probabilities(client.predict(value, api_name="/predict"))  # scored as its text


def test_null_through_the_api_is_blank(client):
    result = client.predict(None, api_name="/predict")
    assert result["confidences"] is None and "리뷰를 입력해 주세요" in result["label"]


def test_batch_takes_a_list_or_lines(client):
    rows = client.predict(["재밌다", "", "지루했다", 7], api_name="/predict_batch")
    assert [r["document"] for r in rows] == ["재밌다", "", "지루했다", "7"]
    for row in rows[:1] + rows[2:]:
        assert row["negative"] + row["positive"] == pytest.approx(1.0, abs=1e-3)
        assert row["label"] in ("negative", "positive") and row["truncated"] is False
    assert rows[1]["positive"] is None and rows[1]["label"] == ""
    assert len(client.predict("재밌다\n지루했다\n", api_name="/predict_batch")) == 2
    assert client.predict(["x" * 3000], api_name="/predict_batch")[0]["truncated"] is True


def test_batch_rejects_a_bad_value_and_the_server_survives(client, server):
    from gradio_client.exceptions import AppError

    for bad in (12345, {"not": "a list"}):
        with pytest.raises(AppError, match="list of reviews"):
            client.predict(bad, api_name="/predict_batch")
    with pytest.raises(AppError, match="limit is 5,000"):
        client.predict(["좋다"] * 5001, api_name="/predict_batch")
    assert server[1].poll() is None
    assert_probabilities(client.predict("아직 살아 있나요", api_name="/predict"))


def test_file_upload_gives_table_and_csv(client, tmp_path):
    import csv

    from gradio_client import handle_file

    src = tmp_path / "reviews.csv"
    src.write_text('id,document\n1,"재밌다, 정말"\n2,=HYPERLINK("x")\n3,지루함\n', encoding="utf-8")
    table, csv_path = client.predict(handle_file(str(src)), api_name="/predict_file")
    assert table["headers"] == ["document", "negative", "positive", "label", "truncated"]
    assert [r[0] for r in table["data"]] == ["재밌다, 정말", '=HYPERLINK("x")', "지루함"]
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and rows[1]["document"].startswith("'=")  # defused for spreadsheets
    assert float(rows[0]["negative"]) + float(rows[0]["positive"]) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("name, content, message", [
    ("no_column.csv", "id,text\n1,좋다\n", "no 'document' column"),
    ("empty.txt", "\n\n", "holds no reviews"),
    ("big.txt", "좋다\n" * 5001, "limit is 5,000"),
    ("binary.txt", b"\x00\x01\x02" * 10, "binary"),
    ("huge.txt", "좋다\n" * 400_000, "limit is 2 MB"),  # 2.8 MB
    ("slides.pdf", "%PDF-1.4", "Invalid file type"),
])
def test_bad_files_get_clear_messages(client, tmp_path, name, content, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(path)), api_name="/predict_file")


def test_eight_concurrent_clients(server):
    from gradio_client import Client

    def one_client(k: int) -> list[dict]:
        c = Client(server[0], verbose=False)
        return [c.predict(f"{k}번 손님의 {i}번째 리뷰: 재밌었어요", api_name="/predict") for i in range(25)]

    with ThreadPoolExecutor(8) as pool:
        answers = [a for batch in pool.map(one_client, range(8)) for a in batch]
    assert len(answers) == 200
    for a in answers:
        assert_probabilities(a)
    assert server[1].poll() is None


@pytest.fixture(scope="module")
def failed_starts(tiny_model_dir, tmp_path_factory):
    """Three starts that must fail, and one import of app.py, side by side (each pays the Gradio import)."""
    tmp = tmp_path_factory.mktemp("fail")
    # A copy of app.py in an empty folder: its default models/nsmc-small/ cannot exist there.
    (tmp / "app.py").write_text((ROOT / "app.py").read_text(encoding="utf-8"), encoding="utf-8")
    runs = {
        "missing_dir": ([str(ROOT / "app.py"), "--model", str(tmp / "nope")], ROOT, {}),
        "missing_default": ([str(tmp / "app.py")], tmp, {"PYTHONPATH": str(ROOT)}),
        "bad_auth": ([str(ROOT / "app.py"), "--model", str(tiny_model_dir), "--auth", "no-colon"], ROOT, {}),
        # Imported the way `gradio app.py` and Spaces tooling do; MODEL_DIR picks the model.
        "import": (["-c", "import sys, app; print(app.classifier.name, sorted(m for m in sys.modules "
                          "if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'train')))"],
                   ROOT, {"MODEL_DIR": str(tiny_model_dir), "NSMC_RUNTIME": "torch"}),
    }
    procs = {
        name: subprocess.Popen([sys.executable, *argv], cwd=cwd, env=app_env(**env), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name, (argv, cwd, env) in runs.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = (proc.returncode, err if proc.returncode else out)
    return results


def test_missing_model_dir_is_a_clear_error(failed_starts):
    rc, err = failed_starts["missing_dir"]
    assert rc == EXIT_USER_ERROR and "No model at" in err and "python -m train" in err
    assert "Traceback" not in err


def test_missing_default_model_says_how_to_train(failed_starts):
    rc, err = failed_starts["missing_default"]
    assert rc == EXIT_USER_ERROR and "python -m train" in err and "--model PATH" in err and "MODEL_DIR" in err
    assert "Traceback" not in err


def test_bad_auth_value_is_refused(failed_starts):
    rc, err = failed_starts["bad_auth"]
    assert rc == EXIT_USER_ERROR and "USER:PASSWORD" in err and "Traceback" not in err


def test_import_loads_model_from_env_without_lightning(failed_starts, tiny_model_dir):
    rc, out = failed_starts["import"]
    assert rc == 0, out
    assert out.split() == [tiny_model_dir.name, "[]"]  # the MODEL_DIR model; no Lightning or train/ modules


def test_json_api_beside_gradio_agrees_with_it(server, client):
    """POST /api/predict (nsmc/api.py) on the real app: the same probabilities as Gradio's /predict,
    in order, under 8 concurrent callers that the batcher merges."""
    import json
    import urllib.request

    def post(payload: dict) -> dict:
        req = urllib.request.Request(server[0] + "api/predict", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200
            return json.loads(r.read())

    review = "배우들 연기가 정말 좋았어요"
    [p] = post({"text": review})["predictions"]
    gradio = confidences(client.predict(review, api_name="/predict"))
    assert p["scores"]["positive"] == pytest.approx(gradio[POS], abs=1e-3)
    texts = [f"{k}번째 리뷰: {'재밌었어요' if k % 2 else '지루했어요'}" for k in range(40)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: post({"text": t})["predictions"][0], texts))
    together = post({"texts": texts})["predictions"]
    expected = [t["scores"]["positive"] for t in together]
    assert [a["scores"]["positive"] for a in answers] == pytest.approx(expected, abs=1e-3)
    assert post({"texts": ["", None]})["predictions"][0]["label"] is None
    with urllib.request.urlopen(server[0] + "api/health", timeout=10) as r:
        assert json.loads(r.read())["status"] == "ok"


def page_config(url: str) -> dict:
    import json
    import urllib.request

    with urllib.request.urlopen(url + "config", timeout=30) as r:
        return json.loads(r.read())


def test_an_nsmc_model_gets_the_korean_sentiment_page(server):
    config = page_config(server[0])
    assert config["title"] == "NSMC 영화 리뷰 감정 분석"
    assert "액션이 없는데도 재미 있는 몇안되는 영화" in json_text(config)


def json_text(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


@pytest.fixture(scope="module")
def three_label_app(tmp_path_factory, tiny_tokenizer):
    """app.py serving a three-label model whose folder has a card and examples.json."""
    import json

    from app_server import running_app
    from conftest import make_tiny_model

    folder = make_tiny_model(tmp_path_factory.mktemp("three") / "export", tiny_tokenizer,
                             labels=["sad", "calm", "happy"])
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# Moods of Korean diaries\n", encoding="utf-8")
    (folder / "examples.json").write_text(json.dumps(["오늘은 기분이 좋다", 7, "비가 와서 우울하다"]),
                                         encoding="utf-8")
    log = tmp_path_factory.mktemp("three-app") / "app.log"
    with running_app(folder, log, "--runtime", "torch") as (url, _):  # the runtime is not under test here
        yield url


def test_a_three_label_model_serves_three_scores_everywhere(three_label_app, tmp_path):
    import json
    import urllib.request

    from gradio_client import Client, handle_file

    url, names = three_label_app, {"sad", "calm", "happy"}
    client = Client(url, verbose=False)
    page = client.predict("오늘은 기분이 좋다", api_name="/predict")
    assert set(confidences(page)) == names and page["label"] in names
    assert sum(confidences(page).values()) == pytest.approx(1.0, abs=1e-4)
    [row] = client.predict(["오늘은 기분이 좋다"], api_name="/predict_batch")
    assert set(row) == {"document", *names, "label", "truncated"} and row["label"] in names
    src = tmp_path / "diary.txt"
    src.write_text("좋다\n싫다\n", encoding="utf-8")
    table, _ = client.predict(handle_file(str(src)), api_name="/predict_file")
    assert table["headers"] == ["document", "sad", "calm", "happy", "label", "truncated"]
    highlights, _ = client.predict("오늘은 기분이 좋다", api_name="/explain")
    assert "".join(h["token"] for h in highlights) == "오늘은 기분이 좋다"
    req = urllib.request.Request(url + "api/predict", data=json.dumps({"text": "좋다"}).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        [p] = json.loads(r.read())["predictions"]
    assert set(p["scores"]) == names and p["label"] == max(p["scores"], key=p["scores"].get)
    config = page_config(url)
    assert config["title"] == "Moods of Korean diaries"  # from the model card
    assert "비가 와서 우울하다" in json_text(config) and "액션이 없는데도" not in json_text(config)
