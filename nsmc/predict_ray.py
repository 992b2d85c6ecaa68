"""Score many files on a Ray cluster with Ray Data: the rows `python -m nsmc.predict` writes, one model
per worker. Optional: `pip install -r requirements-ray.txt` (the app does not need it).

    python -m nsmc.predict_ray --model models/nsmc-small reviews.parquet scored/         # a local Ray
    python -m nsmc.predict_ray --model /shared/model s3://bucket/in/ s3://bucket/out/ \\
        --address auto --workers 8 --cpus_per_worker 4                                     # on a cluster

The input is Parquet (a file or a folder of them), CSV (`.csv`, `.csv.gz`) or JSON Lines (`.jsonl`),
by its extension or --input_format; the output is a folder of Parquet (default), CSV or JSONL files.
Rows come out in no particular order (Ray Data's default): keep an id column to join on.

In a Ray program of your own, `Scorer` is what `map_batches` needs:

    ds = ray.data.read_parquet(path)
    ds = ds.map_batches(Scorer, fn_constructor_kwargs={"model": "/shared/model"}, batch_format="pandas",
                        batch_size=1024, compute=ray.data.ActorPoolStrategy(size=8), num_cpus=4)
    ds.write_parquet(out)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from nsmc.cli import command_errors
from nsmc.errors import UserError
from nsmc.inference import TextClassifier, set_threads
from nsmc.predict import DEFAULT_COLUMN, column_names, joined_texts, scored_frame
from nsmc.runtime import DEFAULT_RUNTIME, HELP, RUNTIMES, usable_cores

ROOT = Path(__file__).resolve().parents[1]
BATCH_ROWS = 1_024  # rows a worker scores per call: large enough to group texts of equal length
READERS = {"parquet": "read_parquet", "csv": "read_csv", "json": "read_json"}
WRITERS = {"parquet": "write_parquet", "csv": "write_csv", "json": "write_json"}


class Scorer:
    """A callable class for `ray.data.Dataset.map_batches(Scorer, batch_format="pandas", ...)`: Ray
    builds one per worker (actor), so the model loads once per worker; each pandas batch comes back
    with one probability column per label and the predicted label, as `nsmc.predict` writes them."""

    def __init__(self, model: str, text_column_names: str = DEFAULT_COLUMN, runtime: str = DEFAULT_RUNTIME,
                 base_model: str | None = None):
        import ray

        self.classifier = TextClassifier.load(model, base_model=base_model, runtime=runtime)
        # The cores Ray gave this worker: torch would otherwise take every core of the machine.
        set_threads(int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0)) or None)
        self.text_columns = column_names(text_column_names)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        texts = joined_texts(batch, self.text_columns)
        return scored_frame(batch, texts, self.classifier.predict_proba(texts), self.classifier.label_names)


def input_format(path: str) -> str:
    name = path.rstrip("/").lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return "json"
    return "parquet"  # a .parquet file, or a folder / bucket prefix of them


def run(model: str, source: str, target: str, text_column_names: str = DEFAULT_COLUMN,
        runtime: str = DEFAULT_RUNTIME, base_model: str | None = None, workers: int = 1,
        cpus_per_worker: int | None = None, batch_rows: int = BATCH_ROWS, in_format: str | None = None,
        out_format: str = "parquet") -> None:
    """Read `source`, score it on the Ray cluster this process is connected to, write `target`."""
    import ray

    ds = getattr(ray.data, READERS[in_format or input_format(source)])(source)
    columns = ds.columns()
    missing = [c for c in column_names(text_column_names) if c not in columns]
    if missing:
        found = ", ".join(map(repr, columns))
        raise UserError(f"{source} has no column {', '.join(map(repr, missing))} (columns found: {found}). "
                        f"Name the text column(s) with --text_column_names.")
    scorer = {"model": str(model), "text_column_names": text_column_names, "runtime": runtime,
              "base_model": base_model}
    scored = ds.map_batches(Scorer, fn_constructor_kwargs=scorer, batch_format="pandas",
                            batch_size=batch_rows, compute=ray.data.ActorPoolStrategy(size=workers),
                            num_cpus=cpus_per_worker or 1)
    getattr(scored, WRITERS[out_format])(target)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m nsmc.predict_ray", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", metavar="INPUT",
                        help="a Parquet file or folder, .csv(.gz) or .jsonl, where every node can read it")
    parser.add_argument("output", metavar="OUTPUT", help="folder to write the scored files into")
    parser.add_argument("--model", required=True,
                        help="exported model folder or .ckpt, at this path on every node")
    parser.add_argument("--base-model", "--base_model", dest="base_model",
                        help="base model name or folder, for a .ckpt that carries no config/tokenizer")
    parser.add_argument("--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME,
                        help=f"{HELP} (default: {DEFAULT_RUNTIME})")
    parser.add_argument("--text_column_names", "--text-column-names", default=DEFAULT_COLUMN,
                        help=f"text column(s), comma-separated, joined with a space (default: "
                             f"{DEFAULT_COLUMN})")
    parser.add_argument("--input_format", "--input-format", choices=list(READERS),
                        help="default: from INPUT's extension, else parquet")
    parser.add_argument("--output_format", "--output-format", choices=list(WRITERS), default="parquet")
    parser.add_argument("--address",
                        help="a running cluster: auto, or ray://HEAD:10001 (default: start a Ray here)")
    parser.add_argument("--workers", type=int, default=1,
                        help="scorers (Ray actors), each loading the model once (default: 1)")
    parser.add_argument("--cpus_per_worker", "--cpus-per-worker", type=int,
                        help="cores each scorer reserves (default: 1 on a cluster; locally all but the one "
                             "Ray's read and write tasks need, which would otherwise wait for it for ever)")
    parser.add_argument("--batch_rows", "--batch-rows", type=int, default=BATCH_ROWS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with command_errors("nsmc.predict_ray"):
        score_with_ray(args)
    print(f"Wrote the scored rows to {args.output}/ ({args.output_format}).")


def score_with_ray(args: argparse.Namespace) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed: pip install -r requirements-ray.txt") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reports usage to Anyscale unless told not to
    if args.address:
        ray.init(address=args.address)
    else:  # a local Ray: its workers import nsmc from this checkout
        ray.init(num_cpus=usable_cores(), runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        # Locally, one worker reserves all cores but one: Ray's read and write tasks need that one.
        cpus = args.cpus_per_worker or (None if args.address else max(1, usable_cores() - 1))
        run(args.model, args.input, args.output, args.text_column_names, args.runtime, args.base_model,
            args.workers, cpus, args.batch_rows, args.input_format, args.output_format)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
