"""Serve a text classifier (default: NSMC movie-review sentiment) as a Gradio page, Gradio's API (/predict,
/predict_batch, /explain, /predict_file) and a JSON API (POST /api/predict, nsmc/api.py). See docs/app.md."""

import asyncio
import html
import os
import sys
from contextlib import contextmanager
from pathlib import Path

# Gradio tuning, in one place (why: bench/RESULTS.md, "Serving notes"; limits: nsmc/guard.py). No phoning
# home; the unused monitoring table rebuilt from 1,000 events once per 1,000, not 10,000 after every event.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
# No concurrency limit: the one Batcher decides. api_open=False closes /gradio_api/run/ (it skips the queue).
# Queue positions sent once a second, not at every job start. 16 sessions: nothing here is stateful.
QUEUE = dict(max_size=256, default_concurrency_limit=None, api_open=False, status_update_rate=1)
SESSIONS_KEPT = 16

from nsmc import guard  # noqa: E402

guard.private_gradio_cache()  # uploads in a folder of our own, removed at exit; Gradio reads it at import

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from nsmc import api, corpus  # noqa: E402
from nsmc.errors import UserError  # noqa: E402
from nsmc.inference import rows  # noqa: E402
from nsmc.options import load, parse_args  # noqa: E402
from nsmc.page import banner, page_for, truncated_note  # noqa: E402
from nsmc.uploads import MAX_BYTES, MAX_ROWS, check_rows, read_reviews, write_csv  # noqa: E402

# Loaded once, when run or imported (Spaces run `python app.py`; `gradio app.py` imports it).
args = parse_args(sys.argv[1:] if __name__ == "__main__" else [], __doc__)
classifier = load(args, Path(__file__).resolve().parent / "models" / "nsmc-small")
page = page_for(classifier, args.title)
OUT_DIR = guard.temp_folder("nsmc-app-")  # CSVs for download; removed at exit and on SIGTERM/SIGINT


@contextmanager
def user_errors():  # a user's mistake or a full server (Busy): a message on the page, not a traceback
    try:
        yield
    except UserError as e:
        raise gr.Error(html.escape(str(e), quote=False)) from None  # shown as HTML; it may quote a file


async def score(texts: list) -> list[dict]:  # async: the Batcher's future is awaited, no thread held
    check_rows(len(texts))
    return rows(texts, await asyncio.wrap_future(classifier.submit(texts)), classifier.label_names)


async def predict(text) -> dict | str:
    with user_errors():
        [row] = await score([corpus.as_text(text)])
    return dict(zip(classifier.labels, map(row.get, classifier.label_names))) if row["label"] else page.empty


def explain(text) -> tuple[list | None, str]:
    with user_errors():
        result = classifier.explain(corpus.as_text(text))
    if result is None:
        return None, page.empty
    return result.highlights, truncated_note() if result.truncated else ""


async def predict_batch(reviews: list[str] | str) -> list[dict]:
    """Score many texts: a list of strings, or one string with a text on each line."""
    reviews = reviews.splitlines() if isinstance(reviews, str) else reviews
    if not isinstance(reviews, list):
        raise gr.Error("Send a list of reviews (strings), or one text with a review on each line.")
    with user_errors():
        return await score(reviews)


async def predict_file(path: str | None) -> tuple[pd.DataFrame, str]:
    if not path:
        raise gr.Error("파일을 올려 주세요 (upload a .txt, .csv or .tsv file first).")
    with user_errors():
        table = await score(await asyncio.to_thread(read_reviews, path))  # file work off the event loop
    return pd.DataFrame(table), str(await asyncio.to_thread(write_csv, table, OUT_DIR))


with gr.Blocks(title=page.title, delete_cache=(3600, 3600)) as demo:
    gr.Markdown(f"{page.intro}\n\n모델 (model): **{classifier.describe()}**")
    with gr.Tab("하나 · One"):
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label=page.input_label, placeholder=page.placeholder, lines=3,
                                  elem_id="review")
                button = gr.Button("분석하기 (Analyze)", variant="primary", elem_id="analyze")
                gr.Examples(page.examples, inputs=text, cache_examples=False) if page.examples else None
            with gr.Column():
                label = gr.Label(label=page.output_label, num_top_classes=len(classifier.labels),
                                 elem_id="sentiment")
                why = gr.HighlightedText(label=page.why_label, show_legend=False, show_inline_category=False,
                                         elem_id="why")
                note = gr.Markdown(elem_id="note")
        gr.on([button.click, text.submit], predict, text, label, api_name="predict").then(
            explain, text, [why, note], api_name="explain")
    with gr.Tab("여러 개 · Batch"):
        gr.Markdown(f"`.txt` (한 줄에 하나, one a line) 또는 `document` 열이 있는 `.csv`/`.tsv`. "
                    f"최대 {MAX_ROWS:,}개, {MAX_BYTES // 2**20} MB (at most {MAX_ROWS:,} texts, "
                    f"{MAX_BYTES // 2**20} MB).")
        upload = gr.File(label="파일 (file)", file_types=[".txt", ".csv", ".tsv"], type="filepath")
        run = gr.Button("분석하기 (Analyze)", variant="primary")
        table = gr.Dataframe(label="결과 (predictions)", interactive=False, wrap=True)
        download = gr.File(label="CSV 내려받기 (download)", interactive=False)
        run.click(predict_file, upload, [table, download], api_name="predict_file")
    gr.api(predict_batch, api_name="predict_batch")
demo.queue(**QUEUE)

if __name__ == "__main__":
    guard.launch(demo, server_name=args.host, server_port=args.port, share=args.share, auth=args.auth,
                 quiet=True, max_file_size=5 * MAX_BYTES, state_session_capacity=SESSIONS_KEPT,
                 app_kwargs={"routes": api.routes(classifier, args.auth)})  # /api/predict and /api/health
    print(banner(classifier.describe(), demo.local_url, args.share, demo.share_url, args.auth), flush=True)
    demo.block_thread()
