"""Serve the NSMC sentiment classifier as a Gradio page and API (replaces the tutorial's Flask + ngrok page).

Usage:
    python app.py                                        # the shipped model, models/nsmc-small/
    python app.py --model runs/my-run/export             # any exported model folder
    python app.py --model best.ckpt --base-model beomi/kcbert-base
    python app.py --share --auth me:secret               # a public link; anyone with it can use the app
    MODEL_DIR=path/to/model python app.py                # how a Hugging Face Space picks its model

API (see docs/app.md): Client(url).predict("리뷰", api_name="/predict"), and "/predict_batch";
or plain JSON: curl -d '{"text": "리뷰"}' http://127.0.0.1:7860/api/predict   (nsmc/api.py)
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import uuid
from pathlib import Path

# Gradio phones home at launch unless told not to; a demo should not (set it to True to opt in).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# After every request Gradio's queue rebuilds a pandas table of the last 10,000 events for its
# monitoring dashboard (off here): 13% of the server's CPU under load, and memory that grows for
# 10,000 requests. Keep 1,000 events and summarise them once per 1,000.
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")

from nsmc import guard  # noqa: E402

guard.private_gradio_cache()  # uploads in a folder of our own, removed at exit; Gradio reads it at import

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from nsmc import api  # noqa: E402
from nsmc.batcher import Batcher  # noqa: E402
from nsmc.errors import UserError  # noqa: E402
from nsmc.inference import BATCH_SIZE, MAX_CHARS, SentimentClassifier, as_text, cap, is_blank, set_threads  # noqa: E402
from nsmc.runtime import DEFAULT_RUNTIME, HELP, RUNTIMES  # noqa: E402
from nsmc.uploads import MAX_BYTES, MAX_ROWS, read_reviews, write_csv  # noqa: E402

ROOT = Path(__file__).resolve().parent
DEFAULT_MODEL = ROOT / "models" / "nsmc-small"
MAX_BATCH = 16  # single-review requests the queue merges into one forward pass
# Gradio keeps 10,000 by default, each a copy of the page config (35 KB) holding the session's last inputs
# (up to a 2 MB body each): 16 keep that under 40 MB. Nothing here is stateful: dropping one costs nothing.
SESSIONS_KEPT = 16
OUT_DIR_BYTES = 64 * 2**20  # predictions CSVs kept for download; Gradio copies each into its cache at once
EMPTY = "리뷰를 입력해 주세요 (please type a review)"
EXAMPLES = [  # from the NSMC README and its test split
    "액션이 없는데도 재미 있는 몇안되는 영화",
    "원작의 긴장감을 제대로 살려내지못했다.",
    "정말 재밌었다. 현대판 모세... 실화이기에 뜨겁다.",
    "의도는 좋지만 너무 몰입이 안되는걸 어떡해",
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("MODEL_DIR"),
                        help=f"exported model folder or Lightning .ckpt (default: $MODEL_DIR, else {DEFAULT_MODEL.relative_to(ROOT)})")
    parser.add_argument("--base-model", help="base model name or folder, for a .ckpt that carries no config/tokenizer")
    parser.add_argument("--runtime", choices=RUNTIMES, default=os.environ.get("NSMC_RUNTIME", DEFAULT_RUNTIME),
                        help=f"{HELP} (default: $NSMC_RUNTIME, else {DEFAULT_RUNTIME})")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 for the local network)")
    parser.add_argument("--port", type=int, help="port (default 7860, or the next free one)")
    parser.add_argument("--share", action="store_true", help="also create a public *.gradio.live link (needs internet)")
    parser.add_argument("--auth", default=os.environ.get("GRADIO_AUTH"),
                        help="require a login, USER:PASSWORD (default: $GRADIO_AUTH)")
    return parser.parse_args(argv)


def load(args: argparse.Namespace) -> SentimentClassifier:
    """The model, or exit with a message that says what to do (no traceback)."""
    if args.model is None and not DEFAULT_MODEL.exists():
        sys.exit(
            f"app.py: no model to serve yet: the default {DEFAULT_MODEL.relative_to(ROOT)}/ does not exist.\n"
            f"  Train and export one:   python -m train     (see README: it writes the exported folder)\n"
            f"  or serve another one:   python app.py --model PATH   (an exported folder or a .ckpt),\n"
            f"                          or set MODEL_DIR=PATH"
        )
    try:
        return SentimentClassifier.load(args.model or DEFAULT_MODEL, base_model=args.base_model, runtime=args.runtime)
    except UserError as e:
        sys.exit(f"app.py: {e}")


# Load once, when the module is run or imported (Spaces run `python app.py`; `gradio app.py` imports it).
args = parse_args(sys.argv[1:] if __name__ == "__main__" else [])
set_threads()
classifier = load(args)
# The JSON API's queue (nsmc/api.py): one worker per forward pass the runtime runs at once.
batcher = Batcher(classifier.predict_proba, workers=classifier.runtime.streams, max_batch=BATCH_SIZE, max_waiting=256)
OUT_DIR = guard.temp_folder("nsmc-app-")  # CSVs for download; removed at exit


def predict(texts: list[str]) -> tuple[list]:
    """Batched by the queue: a list of reviews in, one list of gr.Label values out."""
    return ([probs or EMPTY for probs in classifier.predict([as_text(t) for t in texts])],)


def explain(text: str) -> tuple[list | None, str]:
    """The words that pushed the decision (occlusion), and a note when the input was cut."""
    result = classifier.explain(as_text(text))
    if result is None:
        return None, EMPTY
    note = f"⚠️ {MAX_CHARS:,}자가 넘어 앞부분만 분석했습니다 (input over {MAX_CHARS:,} characters: only the start was analysed)."
    return result.highlights, note if result.truncated else ""


def score(reviews: list) -> list[dict]:
    """One row per review: probabilities by label name; blank reviews get empty cells."""
    texts = [as_text(r) for r in reviews]
    probs = classifier.predict_proba(texts)
    rows = []
    for text, p in zip(texts, probs):
        blank = is_blank(text)
        row = {"document": cap(text)[0]}
        row.update({name: None if blank else round(float(x), 4) for name, x in zip(classifier.label_names, p)})
        row["label"] = "" if blank else classifier.label_names[int(p.argmax())]
        row["truncated"] = len(text) > MAX_CHARS
        rows.append(row)
    return rows


def predict_batch(reviews: list[str] | str) -> list[dict]:
    """Score many reviews: a list of strings, or one string with a review on each line."""
    if isinstance(reviews, str):
        reviews = reviews.splitlines()
    if not isinstance(reviews, list):
        raise gr.Error("Send a list of reviews (strings), or one text with a review on each line.")
    if len(reviews) > MAX_ROWS:
        raise gr.Error(f"{len(reviews):,} reviews: the limit is {MAX_ROWS:,} per call.")
    return score(reviews)


def predict_file(path: str | None) -> tuple[pd.DataFrame, str]:
    """The upload tab: a table of predictions and the same as a CSV to download."""
    if not path:
        raise gr.Error("파일을 올려 주세요 (upload a .txt, .csv or .tsv file first).")
    try:
        rows = score(read_reviews(path))
    except UserError as e:
        raise gr.Error(html.escape(str(e), quote=False)) from None  # rendered as HTML; it quotes the file
    guard.trim_folder(OUT_DIR, OUT_DIR_BYTES)
    out = OUT_DIR / uuid.uuid4().hex / "predictions.csv"
    out.parent.mkdir()
    return pd.DataFrame(rows), str(write_csv(rows, out))


with gr.Blocks(title="NSMC 영화 리뷰 감정 분석", delete_cache=(3600, 3600)) as demo:
    gr.Markdown(
        "# 영화 리뷰 감정 분석 · Movie review sentiment\n"
        "한국어 영화 리뷰를 넣으면 긍정·부정 확률과 판정에 영향을 준 단어를 보여 줍니다. "
        "Type a Korean movie review to see how positive or negative it reads, and which words decided it."
    )
    gr.Markdown(f"모델 (model): **{classifier.describe()}**")
    with gr.Tab("리뷰 하나 · One review"):
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="영화 리뷰 (review)", placeholder="예: 배우들 연기가 정말 좋았어요", lines=3, elem_id="review")
                button = gr.Button("분석하기 (Analyze)", variant="primary", elem_id="analyze")
                gr.Examples(EXAMPLES, inputs=text, cache_examples=False)
            with gr.Column():
                label = gr.Label(label="감정 (sentiment)", num_top_classes=2, elem_id="sentiment")
                why = gr.HighlightedText(
                    label="왜? 빨강: 판정 쪽으로 민 단어, 보라: 반대쪽 (why: red pushed towards the verdict, purple against)",
                    show_legend=False, show_inline_category=False, elem_id="why",
                )
                note = gr.Markdown(elem_id="note")
        # Single reviews that arrive together share one forward pass (the classifier bounds passes in
        # flight to what the cores take, whichever event asks, so no handler oversubscribes them).
        gr.on([button.click, text.submit], predict, text, label, api_name="predict", batch=True,
              max_batch_size=MAX_BATCH, concurrency_limit=1).then(
            explain, text, [why, note], api_name="explain", concurrency_limit=1)
    with gr.Tab("여러 리뷰 · Batch"):
        gr.Markdown(
            f"`.txt` (한 줄에 리뷰 하나, one review a line) 또는 `document` 열이 있는 `.csv`/`.tsv`. "
            f"최대 {MAX_ROWS:,}개, {MAX_BYTES // 2**20} MB (at most {MAX_ROWS:,} reviews, {MAX_BYTES // 2**20} MB)."
        )
        upload = gr.File(label="파일 (file)", file_types=[".txt", ".csv", ".tsv"], type="filepath")
        run = gr.Button("분석하기 (Analyze)", variant="primary")
        table = gr.Dataframe(label="결과 (predictions)", interactive=False, wrap=True)
        download = gr.File(label="CSV 내려받기 (download)", interactive=False)
        run.click(predict_file, upload, [table, download], api_name="predict_file", concurrency_limit=1, concurrency_id="batch")
    gr.api(predict_batch, api_name="predict_batch", concurrency_limit=1, concurrency_id="batch")
# api_open=False: Gradio otherwise also serves every endpoint at /gradio_api/run/<name>, which skips
# the queue and so its size cap and batching (it is already off on Spaces, not on share links).
demo.queue(max_size=256, api_open=False)


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not (sep and user and password):
        sys.exit("app.py: --auth (or GRADIO_AUTH) must look like USER:PASSWORD.")
    return user, password


def main() -> None:
    auth = parse_auth(args.auth)
    if args.share and not auth:
        print("Note: a share link is public; anyone who has it can use this app. Add --auth USER:PASSWORD to require a login.")
    guard.launch(demo, server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                max_file_size=5 * MAX_BYTES,  # hard stop for uploads; read_reviews gives the friendly 2 MB message
                # Each browser tab and each API call without a session_hash is a new session; Gradio keeps
                # a copy of the page config for each. Nothing here is stateful, so keep few.
                state_session_capacity=SESSIONS_KEPT,
                # /api/predict and /api/health: plain JSON beside Gradio's own API, behind the same login.
                app_kwargs={"routes": api.routes(classifier, batcher, auth)},
                prevent_thread_lock=True)
    if args.share and not demo.share_url:
        # Gradio's own message offline blames a missing frpc file; say what actually happened.
        print(f"\nThe public share link could not be created (no internet, or Gradio's share server is unreachable). "
              f"The app is still running locally at {demo.local_url}", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
