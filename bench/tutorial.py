"""The tutorial's (ratsnlp 1.0.53 + nlpbook notebooks) data and inference path, reproduced for the
benchmark only: nothing in the project imports this.

What it does the way ratsnlp did it (see docs/reference.md section 1):
- `NsmcCorpus.get_examples`: `csv.reader(delimiter="\\t", quotechar='"')` over the whole file, header
  skipped, labels kept as strings;
- features: one call of the *slow* Python tokenizer (`BertTokenizerLegacy`, `do_lower_case=False`)
  on `(text_a, None)` pairs with `max_length=128, padding="max_length", truncation=True`, one
  `ClassificationFeatures` dataclass (lists of ints) per review;
- cache: `torch.save` of the list of dataclasses to `cached_{mode}_{TokenizerClass}_{len}_{corpus}_{task}`
  next to the corpus, behind a `filelock.FileLock`, read back with `torch.load`;
- `data_collator`: dataclasses -> dicts -> `torch.tensor(..., dtype=long)` per field, `label` -> `labels`;
- inference (`deploy_colab.ipynb`'s `inference_fn`): tokenize `[sentence]` padded to 128, fp32 model,
  `torch.no_grad()`, softmax.

Three deviations, all forced: the corpus file is read through gzip (our copy is .gz); `torch.load`
gets `weights_only=False` (torch >= 2.6 refuses the tutorial's pickled dataclasses otherwise; the tutorial
ran on torch 1.x, where that was the default); and a single text goes to the tokenizer as a string, not
as a `(text, None)` pair, which transformers 5's slow tokenizer rejects (older ones produced the same ids).
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch


@dataclass
class TutorialArgs:  # the fields of ClassificationTrainArguments that the data path reads
    downstream_corpus_root_dir: str
    downstream_corpus_name: str = "nsmc"
    downstream_task_name: str = "document-classification"
    max_seq_length: int = 128
    overwrite_cache: bool = False
    learning_rate: float = 5e-5
    batch_size: int = 32


@dataclass
class ClassificationExample:
    text_a: str
    text_b: Optional[str] = None
    label: Optional[str] = None


@dataclass
class ClassificationFeatures:
    input_ids: List[int]
    attention_mask: Optional[List[int]] = None
    token_type_ids: Optional[List[int]] = None
    label: Optional[int] = None


def slow_tokenizer(vocab_file: str | Path):
    """The tutorial's tokenizer: the pure-Python WordPiece (`BertTokenizer` before transformers 5)."""
    from transformers import BertTokenizerLegacy

    return BertTokenizerLegacy(str(vocab_file), do_lower_case=False)


class NsmcCorpus:
    def get_examples(self, data_root_path, mode, limit: int | None = None):
        path = Path(data_root_path) / f"ratings_{mode}.txt"
        if not path.exists():
            path = path.with_name(path.name + ".gz")
        raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
        with io.TextIOWrapper(raw, encoding="utf-8") as f:
            lines = list(csv.reader(f, delimiter="\t", quotechar='"'))
        examples = []
        for i, line in enumerate(lines):
            if i == 0:
                continue
            _, text_a, label = line
            examples.append(ClassificationExample(text_a=text_a, text_b=None, label=label))
            if limit is not None and len(examples) >= limit:
                break
        return examples

    def get_labels(self):
        return ["0", "1"]


def convert_examples_to_features(examples, tokenizer, args: TutorialArgs, label_list):
    label_map = {label: i for i, label in enumerate(label_list)}
    labels = [label_map[example.label] for example in examples]
    # ratsnlp passed (text_a, text_b) pairs; transformers 5's slow tokenizer rejects a None second text,
    # which older versions dropped, so single texts go in as themselves (the same ids).
    batch_encoding = tokenizer(
        [(example.text_a, example.text_b) if example.text_b is not None else example.text_a
         for example in examples],
        max_length=args.max_seq_length, padding="max_length", truncation=True,
    )
    features = []
    for i in range(len(examples)):
        inputs = {k: batch_encoding[k][i] for k in batch_encoding}
        features.append(ClassificationFeatures(**inputs, label=labels[i]))
    return features


def cached_features_file(args: TutorialArgs, tokenizer, mode: str) -> Path:
    name = "cached_{}_{}_{}_{}_{}".format(mode, tokenizer.__class__.__name__, args.max_seq_length,
                                          args.downstream_corpus_name, args.downstream_task_name)
    return Path(args.downstream_corpus_root_dir) / args.downstream_corpus_name / name


class ClassificationDataset(torch.utils.data.Dataset):
    """`corpus_dir` holds ratings_{mode}.txt(.gz); the cache goes under args.downstream_corpus_root_dir
    (the tutorial kept both in one folder; the benchmark keeps its cache out of the shared data)."""

    def __init__(self, args: TutorialArgs, tokenizer, corpus, corpus_dir, mode: str = "train",
                 limit: int | None = None):
        from filelock import FileLock

        self.corpus = corpus
        path = cached_features_file(args, tokenizer, mode)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if path.exists() and not args.overwrite_cache:
                self.features = torch.load(path, weights_only=False)
                self.from_cache = True
            else:
                examples = corpus.get_examples(corpus_dir, mode, limit)
                self.features = convert_examples_to_features(examples, tokenizer, args,
                                                             label_list=corpus.get_labels())
                torch.save(self.features, path)
                self.from_cache = False

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        return self.features[i]


def data_collator(features):
    if not isinstance(features[0], dict):
        features = [vars(f) for f in features]
    first = features[0]
    batch = {}
    if "label" in first and first["label"] is not None:
        label = first["label"].item() if isinstance(first["label"], torch.Tensor) else first["label"]
        dtype = torch.long if isinstance(label, int) else torch.float
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=dtype)
    for k, v in first.items():
        if k not in ("label", "label_ids") and v is not None and not isinstance(v, str):
            if isinstance(v, torch.Tensor):
                batch[k] = torch.stack([f[k] for f in features])
            else:
                batch[k] = torch.tensor([f[k] for f in features], dtype=torch.long)
    return batch


def train_loader(dataset, batch_size: int = 32, seed: int = 0):
    """The tutorial's training DataLoader: RandomSampler + data_collator (num_workers 0 here, as for ours)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size,
                                       sampler=torch.utils.data.RandomSampler(dataset, generator=generator),
                                       collate_fn=data_collator, drop_last=False, num_workers=0)


class TutorialInference:
    """deploy_colab.ipynb's `inference_fn`, plus the same thing for a list of sentences."""

    def __init__(self, model, tokenizer, max_seq_length: int = 128):
        self.model, self.tokenizer, self.max_seq_length = model.eval(), tokenizer, max_seq_length

    def inference_fn(self, sentence: str) -> dict:
        inputs = self.tokenizer([sentence], max_length=self.max_seq_length, padding="max_length",
                                truncation=True)
        with torch.no_grad():
            outputs = self.model(**{k: torch.tensor(v) for k, v in inputs.items()})
            prob = outputs.logits.softmax(dim=1)
            positive_prob = round(prob[0][1].item(), 4)
            negative_prob = round(prob[0][0].item(), 4)
            pred = "긍정 (positive)" if torch.argmax(prob) == 1 else "부정 (negative)"
        return {"sentence": sentence, "prediction": pred, "positive_data": f"긍정 {positive_prob:.4f}",
                "negative_data": f"부정 {negative_prob:.4f}", "positive_width": f"{positive_prob * 100}%",
                "negative_width": f"{negative_prob * 100}%"}

    def predict_proba(self, sentences: list[str]):
        inputs = self.tokenizer(sentences, max_length=self.max_seq_length, padding="max_length",
                                truncation=True)
        with torch.no_grad():
            outputs = self.model(**{k: torch.tensor(v) for k, v in inputs.items()})
            return outputs.logits.softmax(dim=1).numpy()


def training_step(model, optimizer, batch) -> float:
    """One optimizer step as ClassificationTask.training_step + Lightning's automatic optimization do it."""
    outputs = model(**batch)
    outputs.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return outputs.loss.item()
