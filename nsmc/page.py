"""What the page says: NSMC's Korean sentiment page for an NSMC model, a neutral one for any other
(title from `--title` or the model card, examples from the model folder's `examples.json`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from nsmc.inference import MAX_CHARS

MAX_EXAMPLES = 8
WHY = "왜? 빨강: 판정 쪽으로 민 단어, 보라: 반대쪽 (why: red pushed towards the top label, purple against)"


@dataclass(frozen=True)
class Page:
    title: str
    intro: str
    input_label: str
    placeholder: str
    output_label: str
    empty: str  # the answer to a blank input
    examples: list[str]
    why_label: str = WHY


NSMC = Page(
    title="NSMC 영화 리뷰 감정 분석",
    intro="# 영화 리뷰 감정 분석 · Movie review sentiment\n"
          "한국어 영화 리뷰를 넣으면 긍정·부정 확률과 판정에 영향을 준 단어를 보여 줍니다. "
          "Type a Korean movie review to see how positive or negative it reads, and which words decided it.",
    input_label="영화 리뷰 (review)",
    placeholder="예: 배우들 연기가 정말 좋았어요",
    output_label="감정 (sentiment)",
    empty="리뷰를 입력해 주세요 (please type a review)",
    examples=[  # from the NSMC README and its test split
        "액션이 없는데도 재미 있는 몇안되는 영화",
        "원작의 긴장감을 제대로 살려내지못했다.",
        "정말 재밌었다. 현대판 모세... 실화이기에 뜨겁다.",
        "의도는 좋지만 너무 몰입이 안되는걸 어떡해",
    ],
)


def truncated_note(max_chars: int = MAX_CHARS) -> str:
    return (f"⚠️ {max_chars:,}자가 넘어 앞부분만 분석했습니다 "
            f"(over {max_chars:,} characters: only the start was analysed).")


def card_title(folder: Path | None) -> str | None:
    """The first `# ` heading of the model card (README.md), if there is one."""
    try:
        text = (Path(folder) / "README.md").read_text(encoding="utf-8")
    except (OSError, TypeError, UnicodeDecodeError):
        return None
    match = re.search(r"^# +(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def model_examples(folder: Path | None) -> list[str]:
    """`examples.json` in the model folder (a JSON list of strings, written by the export), else none."""
    try:
        examples = json.loads((Path(folder) / "examples.json").read_text(encoding="utf-8"))
    except (OSError, TypeError, ValueError):
        return []
    if not isinstance(examples, list):
        return []
    return [e for e in examples if isinstance(e, str) and e.strip()][:MAX_EXAMPLES]


def page_for(classifier, title: str | None = None) -> Page:
    if classifier.is_nsmc:
        return replace(NSMC, title=title) if title else NSMC
    title = title or card_title(classifier.folder) or classifier.name
    labels = ", ".join(classifier.labels)
    return Page(
        title=title,
        intro=f"# {title}\n텍스트를 넣으면 레이블별 확률과 판정에 영향을 준 단어를 보여 줍니다. "
              f"Type a text to see the probability of each label ({labels}) and the words behind the top "
              "one.",
        input_label="텍스트 (text)",
        placeholder="",
        output_label="레이블 (label)",
        empty="텍스트를 입력해 주세요 (please type a text)",
        examples=model_examples(classifier.folder),
    )


def banner(described: str, local_url: str, share: bool, share_url: str | None, login) -> str:
    """What the app prints once it listens (Gradio's own lines are quieted: they speak of launch())."""
    lines = [f"Serving {described} at {local_url}"]
    if share_url:
        lines.append(f"Public link: {share_url}" + ("" if login else " (anyone with it can use this app; add "
                                                    "--auth USER:PASSWORD to require a login)"))
    elif share:  # Gradio's own message offline blames a missing frpc file
        lines.append("The public link could not be created (no internet, or Gradio's share server is "
                     "unreachable); the app still runs locally.")
    else:
        lines.append("For a public link, run with --share (and --auth USER:PASSWORD to require a login).")
    return "\n".join(lines)
