"""Speed: the tutorial's pipeline (bench/tutorial.py) against ours, side by side, in one run.

Usage (from the project root; not part of the test run):

    .venv/bin/python bench/speed.py --model models/nsmc-small     # the full run (~15-25 min on 2 cores)
    .venv/bin/python bench/speed.py --reviews 40 --train-repeats 1 --prep-repeats 1 --prep-limit 20000 \
        --no-write                                                  # a quick look

Models: kcbert-base with random weights, from ../shared/kcbert-base (its real config.json, vocab.txt
and tokenizer settings: kcbert's own tokenization, lengths and compute; skipped with a note when that
folder is absent; built once into .cache/bench/kcbert-base), and the shipped model given by --model.

Sections (--sections, default all), each pair run alternately in the same process:
  latency  a lone request, one review at a time, reviews drawn at random from the test split: the
           tutorial's inference_fn (slow BertTokenizerLegacy, padding="max_length" 128, fp32, torch.no_grad)
           against the serving path (nsmc.inference.TextClassifier.predict, through its Batcher, which
           runs a lone pass on every core) on each runtime of nsmc.runtime;
  batch    the same reviews in batches of 32, both ways;
  memory   serving peak memory: each variant alone in a fresh child process (load, 32 single reviews,
           one batch);
  train    optimizer steps (AdamW, batch 32) on a random sample of the train split: the tutorial's
           features padded to 128 with RandomSampler + data_collator, against ours (train.data:
           LengthGroupedSampler + Collate, dynamic padding); on --device (cpu, or cuda: a GPU run is
           `--sections train --device cuda --no-write`, its table printed);
  prep     preparing the 150k training set: the tutorial's ClassificationDataset (slow tokenizer, pad to
           128, torch.save of a list of dataclasses) against nsmc.encoding.encode_file (Rust encode_batch,
           .npz cache), cold and from cache; each run in a fresh child process, so its peak memory is its own.
Peak memory: serving and preparation variants each run in their own child process and report its peak RSS
(VmHWM); training reports the shared process's peak RSS while each way runs (sampled every 5 ms).
The `## Speed` section of bench/RESULTS.md is rewritten (other sections are kept);
raw numbers go to .cache/bench/speed-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

CACHE = ROOT / ".cache" / "bench"
DATA = Path(os.environ.get("NSMC_DATA", ROOT.parent / "shared" / "data" / "nsmc"))
# kcbert-base's config.json, vocab.txt and tokenizer settings; $NSMC_KCBERT elsewhere (a GPU machine)
KCBERT = Path(os.environ.get("NSMC_KCBERT", ROOT.parent / "shared" / "kcbert-base"))
NO_KCBERT = f"{KCBERT} is absent: the kcbert-base rows and the preparation section were skipped."
RESULTS = ROOT / "bench" / "RESULTS.md"
MB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- memory ---------------------------------------------------------------------------------


class MemWatch:
    """Peak RSS per label, sampled by a background thread while `track(label)` is active."""

    def __init__(self, interval: float = 0.005):
        self.proc, self.interval, self.label, self.peak = psutil.Process(), interval, None, {}
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def _note(self, label, rss):
        if label is not None:
            self.peak[label] = max(self.peak.get(label, 0), rss)

    def _run(self):
        while not self._stop.wait(self.interval):
            self._note(self.label, self.rss())

    @contextlib.contextmanager
    def track(self, label):
        self._note(label, self.rss())
        self.label = label
        try:
            yield
        finally:
            self.label = None
            self._note(label, self.rss())


# --- setup: vocabulary, models, reviews -------------------------------------------------------


def kcbert_model() -> Path:
    """kcbert-base (real config and vocabulary) with random, seeded weights, saved like an export (once)."""
    out = CACHE / "kcbert-base"
    if not (out / "config.json").is_file():
        from transformers import BertConfig, BertForSequenceClassification

        from nsmc.corpus import LABELS
        from nsmc.loading import load_tokenizer

        log("Saving kcbert-base with random weights (once)...")
        tok = load_tokenizer(KCBERT)
        torch.manual_seed(0)
        config = BertConfig.from_pretrained(
            KCBERT,
            pad_token_id=tok.pad_token_id,
            num_labels=2,
            id2label=dict(enumerate(LABELS)),
            label2id={label: i for i, label in enumerate(LABELS)},
        )
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        BertForSequenceClassification(config).save_pretrained(tmp)
        tok.save_pretrained(tmp)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    return out


def write_vocab_txt(tokenizer, path: Path) -> Path:
    vocab = tokenizer.get_vocab()
    path.write_text(
        "".join(t + "\n" for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])), encoding="utf-8"
    )
    return path


def slow_vocab_for(model_dir: Path, tokenizer) -> Path:
    """The tutorial's slow tokenizer wants a vocab.txt; exported models may carry only tokenizer.json."""
    if (model_dir / "vocab.txt").is_file():
        return model_dir / "vocab.txt"
    path = CACHE / f"vocab-{model_dir.resolve().parent.name}-{model_dir.resolve().name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_vocab_txt(tokenizer, path)


def sample_reviews(n: int, seed: int) -> list[str]:
    from nsmc.corpus import read_ratings

    docs = read_ratings(DATA / "ratings_test.txt.gz").documents
    idx = np.random.default_rng(seed).choice(len(docs), size=min(n, len(docs)), replace=False)
    return [docs[i] for i in idx]


def classifier(model_dir: Path, runtime: str):
    """The app's inference path with a given runtime; refuses to go on if that runtime could not be
    built (TextClassifier.load would serve with torch, and the row would be mislabelled)."""
    from nsmc.inference import TextClassifier

    clf = TextClassifier.load(model_dir, runtime=runtime, log=log)
    if clf.runtime.name != runtime:
        raise SystemExit(
            f"the {runtime} runtime could not be built here (got {clf.runtime.name}); see the log above"
        )
    return clf


# --- statistics ------------------------------------------------------------------------------


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q)) if len(xs) else float("nan")


def med(xs):
    return float(np.median(np.asarray(xs))) if len(xs) else float("nan")


# --- sections --------------------------------------------------------------------------------


def bench_inference(
    name: str, model_dir: Path, reviews: list[str], runtimes: list[str], mem: MemWatch, sections, args
) -> dict:
    from nsmc.loading import load_classifier
    from tutorial import TutorialInference, slow_tokenizer

    res: dict = {
        "model": name,
        "path": str(model_dir),
        "latency": {},
        "batch": {},
        "memory_load_mb": {},
        "memory_peak_mb": {},
    }
    rss0 = mem.rss()
    model, fast = load_classifier(model_dir)
    res["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
    tut = TutorialInference(model, slow_tokenizer(slow_vocab_for(model_dir, fast)))
    res["memory_load_mb"]["tutorial"] = round((mem.rss() - rss0) / MB)
    variants = {"tutorial": tut.predict_proba}
    single = {"tutorial": tut.inference_fn}
    clfs = {}
    for rt in runtimes:
        before = mem.rss()
        t0 = time.perf_counter()
        clfs[rt] = classifier(model_dir, rt)
        res.setdefault("build_s", {})[rt] = round(time.perf_counter() - t0, 2)
        res["memory_load_mb"][f"ours/{rt}"] = round((mem.rss() - before) / MB)
        variants[f"ours/{rt}"] = clfs[rt].predict_proba
        single[f"ours/{rt}"] = lambda t, c=clfs[rt]: c.predict([t])
    # Same tokens both ways? (a sanity check of the slow tokenizer built from the same vocabulary)
    same = sum(
        tut.tokenizer(t, truncation=True, max_length=128)["input_ids"]
        == fast(t, truncation=True, max_length=128)["input_ids"]
        for t in reviews
    )
    res["same_tokens"] = f"{same}/{len(reviews)}"
    # Do the runtimes predict what the tutorial's fp32 predicts?
    ref = tut.predict_proba(reviews[:64]).argmax(1)
    res["agree_with_tutorial_fp32"] = {
        k: float((variants[k](reviews[:64]).argmax(1) == ref).mean()) for k in variants
    }
    names = list(variants)
    for k in names:  # warm-up
        for t in reviews[:3]:
            single[k](t)
    if "latency" in sections:
        times = {k: [] for k in names}
        for i, text in enumerate(reviews):
            if i and i % 50 == 0:
                log(f"{name} latency: {i}/{len(reviews)} reviews")
            order = names[i % len(names) :] + names[: i % len(names)]  # rotate who goes first
            for k in order:
                with mem.track((name, "latency", k)):
                    t0 = time.perf_counter()
                    single[k](text)
                    times[k].append(time.perf_counter() - t0)
        for k in names:
            res["latency"][k] = {
                "p50_ms": pct(times[k], 50) * 1e3,
                "p95_ms": pct(times[k], 95) * 1e3,
                "mean_ms": float(np.mean(times[k])) * 1e3,
                "reviews_per_s": len(times[k]) / float(np.sum(times[k])),
            }
        log(
            f"{name} latency p50: "
            + ", ".join(f"{k} {v['p50_ms']:.1f} ms" for k, v in res["latency"].items())
        )
    if "batch" in sections:
        bs = 32
        batches = [reviews[i : i + bs] for i in range(0, len(reviews) - bs + 1, bs)] or [reviews]
        rates = {k: [] for k in names}
        for i, batch in enumerate(batches):
            order = names[i % len(names) :] + names[: i % len(names)]
            for k in order:
                with mem.track((name, "batch", k)):
                    t0 = time.perf_counter()
                    variants[k](batch)
                    rates[k].append(len(batch) / (time.perf_counter() - t0))
        for k in names:
            res["batch"][k] = {"median_reviews_per_s": med(rates[k]), "batches": len(rates[k])}
        log(
            f"{name} batch-32 reviews/s: "
            + ", ".join(f"{k} {v['median_reviews_per_s']:.1f}" for k, v in res["batch"].items())
        )
    for (m, _, k), v in mem.peak.items():
        if m == name:
            res["memory_peak_mb"][k] = max(res["memory_peak_mb"].get(k, 0), round(v / MB))
    del clfs, variants, single, tut, model
    gc.collect()
    return res


def bench_train(name: str, model_dir: Path, mem: MemWatch, args) -> dict:
    """Optimizer steps of batch 32 on the train split's length distribution, both ways, alternating blocks."""
    from nsmc.corpus import read_ratings
    from nsmc.encoding import encode
    from nsmc.loading import load_classifier
    from train.data import Collate, EncodedDataset, LengthGroupedSampler
    from tutorial import (
        ClassificationExample,
        TutorialArgs,
        convert_examples_to_features,
        slow_tokenizer,
        train_loader,
        training_step,
    )

    ratings = read_ratings(DATA / "ratings_train.txt.gz")
    idx = np.random.default_rng(args.seed).choice(
        len(ratings), size=min(args.train_pool, len(ratings)), replace=False
    )
    texts, labels = [ratings.documents[i] for i in idx], [ratings.labels[i] for i in idx]
    del ratings
    model, fast = load_classifier(model_dir)
    device = torch.device(args.device)
    model.to(device).train()  # dropout on, as in training
    slow = slow_tokenizer(slow_vocab_for(model_dir, fast))
    max_len = min(128, model.config.max_position_embeddings)
    examples = [ClassificationExample(text_a=t, label=str(label)) for t, label in zip(texts, labels)]
    features = convert_examples_to_features(
        examples, slow, TutorialArgs(downstream_corpus_root_dir=""), ["0", "1"]
    )
    enc = encode(texts, fast, max_len, labels)
    bs = 32
    tut_iter = iter(train_loader(features, bs, args.seed))
    ours_loader = torch.utils.data.DataLoader(
        EncodedDataset(enc),
        batch_size=bs,
        sampler=LengthGroupedSampler(enc.lengths(), bs, args.seed),
        collate_fn=Collate(fast.pad_token_id),
        num_workers=0,
    )
    ours_iter = iter(ours_loader)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=5e-5
    )  # one model and optimizer, shared: same state size both ways
    steps = {"tutorial": args.train_steps, "ours": args.train_steps_ours}
    its = {"tutorial": tut_iter, "ours": ours_iter}

    def precision(way: str):
        """On a GPU each way as its project trains: the tutorial in fp32 (ratsnlp's default, fp16=False),
        ours in bf16 autocast (train.trainer.resolve_precision's bf16-mixed)."""
        if device.type == "cuda" and way == "ours":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def block(model, optimizer, batches, way: str, n: int) -> tuple[float, list[int]]:
        widths = []
        t0 = time.perf_counter()
        for _ in range(n):
            batch = {k: v.to(device) for k, v in next(batches).items()}
            widths.append(int(batch["input_ids"].shape[1]))
            with precision(way):
                training_step(model, optimizer, batch)
        if device.type == "cuda":
            torch.cuda.synchronize()  # the steps are queued: wait for them before reading the clock
        return n * bs / (time.perf_counter() - t0), widths

    for way in steps:  # warm-up (allocations, optimizer state)
        block(model, optimizer, its[way], way, 1)
    rates, widths = {w: [] for w in steps}, {w: [] for w in steps}
    for r in range(args.train_repeats):
        for way in ("tutorial", "ours") if r % 2 == 0 else ("ours", "tutorial"):
            with mem.track((name, "train", way)):
                rate, w = block(model, optimizer, its[way], way, steps[way])
            rates[way].append(rate)
            widths[way] += w
            log(f"{name} train {way}: {rate:.1f} reviews/s (mean width {np.mean(w):.0f})")
    res = {
        way: {
            "median_reviews_per_s": med(rates[way]),
            "runs": [round(x, 2) for x in rates[way]],
            "steps_per_run": steps[way],
            "mean_padded_length": float(np.mean(widths[way])),
            "peak_rss_mb": round(mem.peak.get((name, "train", way), 0) / MB),
        }
        for way in steps
    }
    res["pool"] = len(texts)
    res["device"] = (f"{torch.cuda.get_device_name(device)}, tutorial fp32, ours bf16 autocast"
                     if device.type == "cuda" else str(device))
    del model, optimizer, features, enc, tut_iter, ours_iter, its
    gc.collect()
    return res


# prep: each measurement in a child process (`--worker prep-...`), so peak memory is its own


def prep_worker(args) -> None:
    from nsmc.encoding import encode_file
    from nsmc.loading import load_tokenizer
    from tutorial import ClassificationDataset, NsmcCorpus, TutorialArgs, slow_tokenizer

    vocab, data_dir = KCBERT, Path(args.prep_data)
    rss0 = psutil.Process().memory_info().rss
    if args.worker.startswith("prep-tutorial"):
        tok = slow_tokenizer(vocab / "vocab.txt")
        targs = TutorialArgs(
            downstream_corpus_root_dir=str(CACHE / "tutorial-cache"),
            overwrite_cache=args.worker.endswith("cold"),
        )
        t0 = time.perf_counter()
        ds = ClassificationDataset(targs, tok, NsmcCorpus(), data_dir, "train")
        seconds, n = time.perf_counter() - t0, len(ds)
    else:
        tok = load_tokenizer(vocab)
        cache = CACHE / "ours-cache"
        if args.worker.endswith("cold"):
            shutil.rmtree(cache, ignore_errors=True)
        path = next(data_dir.glob("ratings_train.txt*"))
        t0 = time.perf_counter()
        enc = encode_file(path, tok, 128, cache, log=lambda *_: None)
        seconds, n = time.perf_counter() - t0, len(enc)
    peak = vm_hwm()
    print(
        "RESULT "
        + json.dumps(
            {
                "seconds": seconds,
                "reviews": n,
                "peak_rss_mb": round(peak / MB),
                "extra_mb": round((peak - rss0) / MB),
            }
        )
    )


def vm_hwm() -> int:
    """Peak RSS of this process (VmHWM; not ru_maxrss, which after fork + exec starts at the parent's
    peak)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def serve_mem_worker(args) -> None:
    """Load one variant, answer 32 reviews one by one and then as one batch; report peak RSS."""
    reviews = json.loads(Path(args.reviews_file).read_text(encoding="utf-8"))
    model_dir, variant = Path(args.model_dir), args.worker.removeprefix("mem-")
    rss0 = psutil.Process().memory_info().rss
    if variant == "tutorial":
        from nsmc.loading import load_classifier
        from tutorial import TutorialInference, slow_tokenizer

        model, fast = load_classifier(model_dir)
        tut = TutorialInference(model, slow_tokenizer(slow_vocab_for(model_dir, fast)))
        one, many = tut.inference_fn, tut.predict_proba
    else:
        clf = classifier(model_dir, variant.removeprefix("ours/"))
        one, many = (lambda t: clf.predict([t])), clf.predict_proba
    for t in reviews:
        one(t)
    many(reviews)
    print(
        "RESULT "
        + json.dumps({"peak_rss_mb": round(vm_hwm() / MB), "extra_mb": round((vm_hwm() - rss0) / MB)})
    )


def child(worker: str, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", worker, *extra]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "true"}
    )
    result = next((line for line in out.stdout.splitlines() if line.startswith("RESULT ")), None)
    if out.returncode or result is None:
        raise RuntimeError(f"{worker} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(result[7:])


def bench_serve_memory(name: str, model_dir: Path, reviews: list[str], runtimes: list[str]) -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "mem-reviews.json"
    path.write_text(json.dumps(reviews[:32], ensure_ascii=False), encoding="utf-8")
    res = {}
    for variant in ["tutorial"] + [f"ours/{rt}" for rt in runtimes]:
        res[variant] = child(f"mem-{variant}", "--model-dir", str(model_dir), "--reviews-file", str(path))
        log(f"{name} serving memory {variant}: peak {res[variant]['peak_rss_mb']} MB")
    return res


def bench_prep(args) -> dict:
    data_dir = DATA
    if args.prep_limit:
        data_dir = CACHE / f"prep-data-{args.prep_limit}"
        if not (data_dir / "ratings_train.txt").is_file():
            from nsmc.corpus import open_text

            data_dir.mkdir(parents=True, exist_ok=True)
            with open_text(DATA / "ratings_train.txt.gz") as f:
                lines = [next(f) for _ in range(args.prep_limit + 1)]
            (data_dir / "ratings_train.txt").write_text("".join(lines), encoding="utf-8")

    def run(worker: str) -> dict:
        r = child(worker, "--prep-data", str(data_dir))
        log(f"prep {worker}: {r['seconds']:.2f} s, {r['reviews']:,} reviews, peak {r['peak_rss_mb']} MB")
        return r

    runs = {k: [] for k in ("tutorial-cold", "ours-cold", "tutorial-cache", "ours-cache")}
    for r in range(args.prep_repeats):
        pairs = (("tutorial-cold", "ours-cold"), ("tutorial-cache", "ours-cache"))
        for a, b in pairs:
            for k in (a, b) if r % 2 == 0 else (b, a):
                runs[k].append(run("prep-" + k))
    res = {
        k: {
            "median_s": med([x["seconds"] for x in v]),
            "runs_s": [round(x["seconds"], 3) for x in v],
            "peak_rss_mb": max(x["peak_rss_mb"] for x in v),
            "extra_mb": max(x["extra_mb"] for x in v),
            "reviews": v[0]["reviews"],
        }
        for k, v in runs.items()
    }
    tut_cache = CACHE / "tutorial-cache" / "nsmc"
    res["cache_size_mb"] = {
        "tutorial": round(
            sum(p.stat().st_size for p in tut_cache.glob("cached_*") if not p.name.endswith(".lock")) / MB, 1
        ),
        "ours": round(sum(p.stat().st_size for p in (CACHE / "ours-cache").glob("*.npz")) / MB, 1),
    }
    return res


# --- report ----------------------------------------------------------------------------------


def machine() -> dict:
    import onnxruntime
    import tokenizers
    import transformers

    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "os": platform.platform(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def fmt(x, digits=1):
    return "n/a" if x is None or x != x else f"{x:,.{digits}f}"


def ratio(a, b):
    return "n/a" if not a or not b or a != a or b != b else f"{a / b:.1f}x"


def report(res: dict, command: str) -> str:
    m = res["machine"]
    out = [
        "## Speed",
        "",
        f"Command: `{command}`  ",
        f"Machine: {m['cpu']}, {m['cores']} usable cores, {m['memory_gb']} GB; Python {m['python']}, torch "
        f"{m['torch']} "
        f"({m['torch_threads']} threads), transformers {m['transformers']}, tokenizers {m['tokenizers']}, "
        f"onnxruntime {m['onnxruntime']}  ",
        f"Run: {res['started']} to {res['finished']} UTC; load average {m['load_before']} before, "
        f"{m['load_after']} after "
        "(other jobs on the machine add noise; both sides of each pair ran interleaved, so they saw the "
        "same load)  ",
        "Tutorial = bench/tutorial.py (ratsnlp's way: slow `BertTokenizerLegacy`, "
        '`padding="max_length"` 128, fp32, `torch.no_grad`, '
        "dataclass features, `torch.save` cache, `data_collator`). Ours = `nsmc.inference.TextClassifier` "
        "with each "
        "`nsmc.runtime` backend, `train.data` (dynamic padding, length-grouped batches), "
        "`nsmc.encoding.encode_file`.",
        "",
    ]
    busy = max(m["load_before"][0], m.get("load_after", [0])[0])
    if busy > 0.75 * m["cores"]:
        res.setdefault("notes", []).append(
            f"the machine was busy with other jobs (load average up to {busy:.1f} on {m['cores']} cores). "
            f"torch's {m['torch_threads']} "
            "OpenMP threads then wait on each other at every operator, so every torch row (the tutorial's, "
            "ours/torch, ours/int8, "
            "training) runs several times slower than on an idle machine, while ONNX Runtime (no "
            "busy-waiting) suffers much less: "
            "the ONNX speed-ups here are inflated and the torch ones understated. Rerun on an idle machine "
            "for numbers to quote."
        )
    for note in res.get("notes", []):
        out += [f"- Note: {note}"]
    if res.get("notes"):
        out.append("")
    for mres in res["models"]:
        name, path = mres["model"], Path(mres["path"])
        out += [
            f"### {name} ({mres['params_m']}M parameters; "
            f"`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`)",
            "",
        ]
        out += (
            []
            if not mres["latency"]
            else [
                f"Reviews: {res['reviews']} drawn from the test split (seed {res['seed']}). Slow and fast "
                "tokenizers gave identical ids "
                f"for {mres['same_tokens']}. Prediction agreement with the tutorial's fp32 on 64 reviews: "
                + ", ".join(f"{k} {v:.0%}" for k, v in mres["agree_with_tutorial_fp32"].items())
                + ".",
                "",
            ]
        )
        sm = mres.get("serve_memory", {})
        if (
            mres["latency"] or mres["batch"] or sm
        ):  # any one section alone still gets its columns (the rest n/a)
            tut = mres["latency"].get("tutorial", {})
            out += [
                "| one review | p50 ms | p95 ms | reviews/s | p50 speed-up | batch-32 reviews/s | batch "
                "speed-up | serving peak RSS MB |",
                "|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for k in mres["latency"] or mres["batch"] or sm:
                v = mres["latency"].get(k, {})
                b = mres["batch"].get(k, {}).get("median_reviews_per_s")
                bt = mres["batch"].get("tutorial", {}).get("median_reviews_per_s")
                out.append(
                    f"| {k} | {fmt(v.get('p50_ms'))} | {fmt(v.get('p95_ms'))} | "
                    f"{fmt(v.get('reviews_per_s'))} | "
                    f"{'-' if k == 'tutorial' else ratio(tut.get('p50_ms'), v.get('p50_ms'))} | {fmt(b)} | "
                    f"{'-' if k == 'tutorial' else ratio(b, bt)} | "
                    f"{sm.get(k, {}).get('peak_rss_mb', 'n/a')} |"
                )
            out += [
                "",
                "Serving peak RSS: a fresh process that loads only that variant and answers 32 reviews one "
                "by one, then as one "
                "batch (`--sections memory`; Python + torch + transformers alone take a few hundred MB of "
                "it). The ONNX rows still hold the "
                "torch model that `TextClassifier` loads. Time to build each variant in this run (an ONNX "
                "graph is exported / "
                "quantized on first use, then loaded from .cache/runtime/): "
                + ", ".join(f"{k} {v} s" for k, v in mres.get("build_s", {}).items())
                + ".",
                "",
            ]
        if mres.get("train"):
            t = mres["train"]
            out += [
                f"Training throughput (AdamW steps of batch 32 on {t['pool']:,} reviews sampled from the "
                f"train split, on {t.get('device', 'cpu')}; "
                f"{t['tutorial']['steps_per_run']} tutorial / {t['ours']['steps_per_run']} ours steps per "
                "run, runs alternating):",
                "",
                "| training | reviews/s (median) | runs | mean padded length | peak RSS MB (whole process) "
                "| speed-up |",
                "|---|---:|---|---:|---:|---:|",
            ]
            tut_rate = t["tutorial"]["median_reviews_per_s"]
            for way in ("tutorial", "ours"):
                v = t[way]
                out.append(
                    f"| {way} | {fmt(v['median_reviews_per_s'], 2)} | {v['runs']} | "
                    f"{v['mean_padded_length']:.1f} | {v['peak_rss_mb']} | "
                    f"{'-' if way == 'tutorial' else ratio(v['median_reviews_per_s'], tut_rate)} |"
                )
            out += [
                "",
                "Training peak RSS is the process's (one model and AdamW state shared by both ways, "
                "tutorial and ours in alternating "
                "runs; memory the allocator kept from an earlier run counts again). Ours' peak depends on "
                "the batch: a batch of the "
                "longest reviews pads to 128 like every tutorial batch, so our worst case equals the "
                "tutorial's; typical batches are "
                "far shorter.",
                "",
            ]
    if res.get("prep"):
        p = res["prep"]
        out += [
            f"### Preparing the training set ({p['tutorial-cold']['reviews']:,} reviews, kcbert-base "
            "vocabulary, max length 128)",
            "",
            "| preparation | median s | runs s | peak RSS MB (child process) | of which the preparation | "
            "speed-up |",
            "|---|---:|---|---:|---:|---:|",
        ]
        for k in ("tutorial-cold", "ours-cold", "tutorial-cache", "ours-cache"):
            v = p[k]
            base = p["tutorial-" + k.split("-")[1]]["median_s"]
            out.append(
                f"| {k} | {fmt(v['median_s'], 2)} | {v['runs_s']} | {v['peak_rss_mb']} | +{v['extra_mb']} | "
                f"{'-' if k.startswith('tutorial') else ratio(base, v['median_s'])} |"
            )
        out += [
            "",
            f"Cache on disk: tutorial {p['cache_size_mb']['tutorial']} MB (pickled dataclasses), ours "
            f"{p['cache_size_mb']['ours']} MB (.npz).",
            "",
        ]
    out += ["### Targets (ours over the tutorial, same run)", ""]
    out += [f"- {line}" for line in targets(res)]
    return "\n".join(out).rstrip() + "\n"


def targets(res: dict) -> list[str]:
    lines = []
    kc = next((m for m in res["models"] if m["model"] == "kcbert-base"), None)
    if kc and kc["latency"]:
        tut = kc["latency"]["tutorial"]["p50_ms"]
        for k, v in kc["latency"].items():
            if k != "tutorial":
                r = tut / v["p50_ms"]
                lines.append(
                    f"one-review latency, kcbert-base, {k}: {r:.1f}x (target 10x: "
                    f"{'met' if r >= 10 else 'not met'})"
                )
    if kc and kc.get("train"):
        r = kc["train"]["ours"]["median_reviews_per_s"] / kc["train"]["tutorial"]["median_reviews_per_s"]
        lines.append(
            f"training throughput, kcbert-base: {r:.1f}x (target 4x: {'met' if r >= 4 else 'not met'})"
        )
    if res.get("prep"):
        p = res["prep"]
        for state, goal in (("cold", 4), ("cache", 20)):
            r = p[f"tutorial-{state}"]["median_s"] / p[f"ours-{state}"]["median_s"]
            lines.append(
                f"data preparation, {'cold' if state == 'cold' else 'from cache'}: {r:.1f}x (target "
                f"{goal}x: {'met' if r >= goal else 'not met'})"
            )
    return lines or ["no kcbert-base or preparation results to compare with the targets"]


def write_section(text: str, path: Path = RESULTS, heading: str = "## Speed") -> None:
    """Replace the section `heading` (up to the next `## ` heading), keeping every other section."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.write_text(new, encoding="utf-8")


# --- main ------------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="models/nsmc-small",
        help="the shipped model folder (skipped with a note if absent)",
    )
    parser.add_argument("--no-kcbert", action="store_true", help="skip the kcbert-base architecture")
    parser.add_argument("--reviews", type=int, default=300, help="test reviews for latency / batch sections")
    parser.add_argument("--runtimes", default="torch,int8,onnx,onnx-int8")
    parser.add_argument("--sections", default="latency,batch,memory,train,prep")
    parser.add_argument("--train-steps", type=int, default=3, help="tutorial optimizer steps per run")
    parser.add_argument("--train-steps-ours", type=int, default=12, help="our optimizer steps per run")
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu",
                        help="where the train section runs: cpu, or cuda (tutorial fp32, ours bf16)")
    parser.add_argument(
        "--train-pool", type=int, default=20000, help="train reviews sampled for the training section"
    )
    parser.add_argument("--prep-repeats", type=int, default=3)
    parser.add_argument(
        "--prep-limit", type=int, default=0, help="prepare only the first N train reviews (quick runs)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-write", action="store_true", help="print the section instead of writing bench/RESULTS.md"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--prep-data", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--reviews-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from nsmc.inference import set_threads

    set_threads()  # for the tutorial's torch passes too
    if args.worker:
        return prep_worker(args) if args.worker.startswith("prep-") else serve_mem_worker(args)
    sections = set(args.sections.split(","))
    runtimes = [r for r in args.runtimes.split(",") if r]
    mem = MemWatch()
    res = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "reviews": args.reviews,
        "seed": args.seed,
        "models": [],
        "notes": [],
    }
    models = [] if args.no_kcbert else [("kcbert-base", None)]
    if not (KCBERT / "config.json").is_file():
        models, sections = [], sections - {"prep"}
        res["notes"].append(NO_KCBERT)
        log(NO_KCBERT)
    shipped = Path(args.model)
    shipped = shipped if shipped.is_absolute() else ROOT / shipped
    if (shipped / "config.json").is_file():
        models.append((shipped.name, shipped))
    else:
        res["notes"].append(
            f"{args.model} does not exist yet: the shipped model was skipped (rerun with --model DIR once "
            "it does)."
        )
        log(res["notes"][-1])
    reviews = sample_reviews(args.reviews, args.seed)
    for name, path in models:
        path = path or kcbert_model()
        log(f"== {name} ({path})")
        mres = {"model": name, "latency": {}, "batch": {}}
        if sections & {"latency", "batch"}:
            mres = bench_inference(name, path, reviews, runtimes, mem, sections, args)
        if "memory" in sections:
            mres["serve_memory"] = bench_serve_memory(name, path, reviews, runtimes)
        if "train" in sections:
            mres["train"] = bench_train(name, path, mem, args)
        mres.setdefault("params_m", "?")
        mres.setdefault("path", str(path))
        mres.setdefault("same_tokens", "n/a")
        mres.setdefault("agree_with_tutorial_fp32", {})
        res["models"].append(mres)
    if "prep" in sections:
        log("== preparing the training set")
        res["prep"] = bench_prep(args)
    res["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    res["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    command = " ".join([".venv/bin/python", "bench/speed.py", *(argv if argv is not None else sys.argv[1:])])
    text = report(res, command)
    CACHE.mkdir(parents=True, exist_ok=True)
    raw = CACHE / f"speed-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw.write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    print(text)
    if not args.no_write:
        write_section(text)
        log(
            f"Wrote the ## Speed section of {RESULTS.relative_to(ROOT)}; raw numbers in "
            f"{raw.relative_to(ROOT)}"
        )


if __name__ == "__main__":
    main()
