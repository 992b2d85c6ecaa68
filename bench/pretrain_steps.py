"""Pre-training step cost: masked-LM as transformers computes it (logits at every position), ours (logits
at the masked positions only) and ELECTRA, on the same length-grouped batches of real reviews, alternately.

Usage:
    python bench/pretrain_steps.py                      # the shipped model's size, 2 CPU cores: ~1 min
    python bench/pretrain_steps.py --device cuda --batch-size 512

Prints a table (median ms per optimizer step, reviews/s, cost against our masked-LM step). The ratio
sets equal-compute budgets for comparing objectives (scripts/compare_objectives.sh).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers import BertConfig, BertForMaskedLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nsmc import corpus  # noqa: E402
from nsmc.loading import load_tokenizer  # noqa: E402
from train.data import LengthGroupedSampler  # noqa: E402
from train.pretrain import OBJECTIVES, MaskingCollate  # noqa: E402


def batches(tokenizer, texts: str, n_reviews: int, batch_size: int, count: int, seed: int = 0) -> list[dict]:
    reviews = corpus.read_lines(texts)[:n_reviews]
    ids = tokenizer(reviews, truncation=True, max_length=128)["input_ids"]
    order = list(LengthGroupedSampler(np.array([len(i) for i in ids]), batch_size, seed))
    collate = MaskingCollate(tokenizer, 0.15)
    return [collate([(ids[j], 0) for j in order[k * batch_size:(k + 1) * batch_size]]) for k in range(count)]


def step_fns(tokenizer, args) -> dict:
    """name -> (module, one training step's loss for a batch); every model starts from the same seed."""
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=args.hidden_size,
                        num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden_size // 64),
                        intermediate_size=4 * args.hidden_size,
                        max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    cfg = SimpleNamespace(batch_size=args.batch_size, generator_hidden_size=args.hidden_size // 4,
                          discriminator_weight=50.0)
    fns = {}
    torch.manual_seed(0)
    hf = BertForMaskedLM(config).to(args.device).train()
    fns["masked-LM, transformers' loss"] = (hf, lambda b: hf(**b).loss)
    for name in ("mlm", "electra"):
        torch.manual_seed(0)
        module_class, architecture = OBJECTIVES[name]
        module = module_class(architecture(config), tokenizer, cfg).to(args.device)
        module.log = lambda *a, **k: None  # outside a Trainer
        fns[{"mlm": "masked-LM, ours", "electra": "ELECTRA, ours"}[name]] = (
            module, lambda b, m=module: m._step(b, "train"))
    return fns


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", default="../shared/data/nsmc/reviews_unlabeled.txt.gz")
    parser.add_argument("--tokenizer", default="models/nsmc-small")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant (after 2 warm-up)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not Path(args.texts).is_file():
        parser.error(f"--texts {args.texts} not found (one review a line, plain or .gz)")
    if not (Path(args.tokenizer) / "tokenizer_config.json").is_file():
        parser.error(f"--tokenizer {args.tokenizer}: no tokenizer_config.json there (a model folder)")

    tokenizer = load_tokenizer(args.tokenizer)
    data = batches(tokenizer, args.texts, 40 * args.batch_size, args.batch_size, args.steps + 2)
    data = [{k: v.to(args.device) for k, v in b.items()} for b in data]
    fns = step_fns(tokenizer, args)
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, (m, _) in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    autocast = torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16,
                              enabled=args.device.startswith("cuda"))
    for i, batch in enumerate(data):  # the variants alternate on each batch: drift hits all alike
        for name, (_, fn) in fns.items():
            sync()
            start = time.perf_counter()
            with autocast:
                loss = fn(batch)
            loss.backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            sync()
            if i >= 2:
                times[name].append(time.perf_counter() - start)

    base = statistics.median(times["masked-LM, ours"])
    print(f"{args.layers} layers x {args.hidden_size}, vocabulary {len(tokenizer):,}, batches of "
          f"{args.batch_size} length-grouped reviews, {args.steps} steps each; {args.device}, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")
    print("| pre-training step | median ms | reviews/s | cost against our masked-LM |")
    print("| --- | --- | --- | --- |")
    for name, ts in times.items():
        median = statistics.median(ts)
        print(f"| {name} | {median * 1000:,.0f} | {args.batch_size / median:,.0f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
