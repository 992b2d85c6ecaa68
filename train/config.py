"""The settings of a run: one dataclass per command, presets in `configs/*.yaml`, any key overridable.

`python -m train configs/smoke.yaml --batch_size 8` reads the YAML over the defaults, then the flags
over that. Defaults reproduce the tutorial's arguments and names (ratsnlp's ClassificationTrainArguments).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nsmc.errors import UserError


def _help(text: str, default=dataclasses.MISSING):
    return field(default=default, metadata={"help": text})


@dataclass
class RunConfig:
    """What every training command shares: optimisation, hardware, checkpoints."""

    # --- optimisation ---
    batch_size: int = _help("Reviews per step and per device.", 32)
    learning_rate: float = _help("Peak learning rate of AdamW.", 5e-5)
    weight_decay: float = _help("AdamW weight decay (not applied to biases and LayerNorm).", 0.01)
    scheduler: str = _help("'linear' (warmup then linear decay, per step), 'exponential' (the tutorial's "
                           "ExponentialLR, per epoch; it now really steps) or 'constant'.", "linear")
    warmup_ratio: float = _help("Fraction of all steps spent warming up the learning rate (linear "
                                "scheduler).", 0.06)
    gamma: float = _help("Decay per epoch of the exponential scheduler.", 0.9)
    gradient_clip_val: float = _help("Clip the gradient norm to this (0 turns clipping off).", 1.0)
    ema_decay: float = _help("0 = off. Else validate, checkpoint and export an exponential moving average of "
                             "the weights with this decay per step (e.g. 0.999).", 0.0)
    epochs: int = _help("Passes over the training data.", 3)
    max_steps: int = _help("Stop after this many optimizer steps (-1: run all epochs); the schedule ends "
                           "there too.", -1)
    max_time: str | None = _help("Stop after this wall time, DD:HH:MM:SS (e.g. 00:00:10:00). Safety net for "
                                 "rented machines.", None)
    seed: int = _help("Random seed: model init, validation split, batch order.", 7)
    max_seq_length: int = _help("Longest review in tokens; longer ones are cut. Batches are padded only to "
                                "their longest review.", 128)
    group_by_length: bool = _help("Train on batches of similar-length reviews (much less padding, same "
                                  "randomness across epochs).", True)
    cache_dir: str = _help("Where encoded datasets are cached (keyed by tokenizer, max length and file "
                           "contents).", ".cache/nsmc")
    cpu_workers: int = _help("DataLoader worker processes (0 = load in the main process; batches are cheap "
                             "to build).", 0)
    # --- hardware ---
    accelerator: str = _help("'auto', 'cpu', 'gpu', 'tpu', 'mps'.", "auto")
    devices: str = _help("'auto', a count ('2') or a list ('0,1').", "auto")
    num_nodes: int = _help("Machines in a multi-node run.", 1)
    strategy: str = _help("'auto', 'ddp', 'fsdp', ... (Lightning strategies).", "auto")
    precision: str = _help("'auto' (bf16-mixed where the GPU supports it, bf16-true on TPU, else 32), or any "
                           "Lightning precision.", "auto")
    tpu_cores: int = _help("The tutorial's flag: 8 means accelerator=tpu with 8 devices.", 0)
    fp16: bool = _help("The tutorial's flag: 16-mixed precision.", False)
    # --- checkpoints and logs ---
    resume: bool = _help("Continue an interrupted run from checkpoints/last.ckpt (same end: optimizer, "
                         "scheduler, epoch).", False)
    val_check_interval: float = _help("Validate this often within an epoch (1.0 = once per epoch, 0.25 = "
                                      "four times), or every N steps (a whole number above 1: 500).", 1.0)
    checkpoint_every_n_steps: int = _help("Also refresh last.ckpt every N steps, so a kill loses little (0 = "
                                          "at validation only).", 0)
    log_every_n_steps: int = _help("Log training loss and accuracy every N steps.", 50)
    test_mode: bool = _help("The tutorial's flag: one batch of each stage, to check the pipeline.", False)

    def __post_init__(self):
        if self.tpu_cores:
            self.accelerator, self.devices = "tpu", str(self.tpu_cores)
        if self.scheduler not in ("linear", "exponential", "constant"):
            raise UserError(f"--scheduler {self.scheduler!r}: choose linear, exponential or constant.")
        for name in ("batch_size", "epochs", "max_seq_length"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be at least 1, not {getattr(self, name)}.")
        validation_interval(self.val_check_interval)
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"--ema_decay {self.ema_decay:g}: use 0 (off) or a decay below 1, such as 0.999.")
        self.devices = parse_devices(self.devices)

    @property
    def out_dir(self) -> Path:
        raise NotImplementedError

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def export_dir(self) -> Path:
        return self.out_dir / "export"


@dataclass
class TrainConfig(RunConfig):
    """`python -m train`: fine-tune on NSMC. The tutorial's names and defaults."""

    pretrained_model_name: str = _help("Hub name or local folder of the pretrained BERT (kcbert is cased: "
                                       "do_lower_case=False is applied).", "beomi/kcbert-base")
    downstream_corpus_name: str = _help("Corpus name for Korpora; only 'nsmc' is supported.", "nsmc")
    downstream_corpus_root_dir: str = _help("Where Korpora downloads NSMC to (and where an earlier download "
                                            "is reused).", "Korpora")
    corpus_dir: str | None = _help("Offline: a folder with ratings_train.txt(.gz) and ratings_test.txt(.gz); "
                                   "skips Korpora.", None)
    # --- your own data (instead of NSMC); the option names of transformers' text-classification example ---
    train_file: str | None = _help("Your own labelled data instead of NSMC: .csv, .tsv, .txt (tab-"
                                   "separated), .json (a list of objects) or .jsonl, optionally .gz.", None)
    validation_file: str | None = _help("Validation data in the same shape (default: a seeded split of "
                                        "train_file, see val_size).", None)
    test_file: str | None = _help("Test data in the same shape, scored once at the end (default: none, "
                                  "no test score).", None)
    text_column_names: list[str] | None = _help("The text column(s) of your files, space- or comma-"
                                                "separated; several are joined with a space.", None)
    label_column_name: str = _help("The label column of your files (strings or integers, two labels or "
                                   "more).", "label")
    label_names: list[str] | None = _help("The labels in the order of the model's classes (default: "
                                          "sorted as found in train_file).", None)
    downstream_model_dir: str = _help("Output folder: checkpoints/, logs/, export/ (the servable model), "
                                      "metrics.json.", "runs/nsmc")
    from_scratch: bool = _help("Build the model from the pretrained folder's config.json with random weights "
                               "(baselines, speed tests).", False)
    val_size: int | None = _help("Reviews carved out of the train split (seeded) for validation and "
                                 "checkpoint choice when there is no validation_file (default: 5,000 or a "
                                 "tenth of the train split, whichever is smaller); the test split is used "
                                 "once, at the end.", None)
    monitor: str = _help("The validation metric that picks the best checkpoint: val_acc or val_f1 "
                         "(macro-F1).", "val_acc")
    run_test: bool = _help("Score the test split at the end. Off for hyper-parameter sweeps, which must "
                           "choose on validation alone.", True)
    export_dtype: str = _help("Weights of the exported model: 'float32' or 'float16' (half the size, same "
                              "predictions to ~1e-3).", "float32")

    def __post_init__(self):
        super().__post_init__()
        if self.downstream_corpus_name != "nsmc":
            raise UserError(f"--downstream_corpus_name {self.downstream_corpus_name!r}: "
                            "only 'nsmc' is supported.")
        if self.export_dtype not in ("float32", "float16", "bfloat16"):
            raise UserError(f"--export_dtype {self.export_dtype!r}: choose float32 or float16.")
        if self.monitor not in ("val_acc", "val_f1"):
            raise UserError(f"--monitor {self.monitor!r}: choose val_acc or val_f1.")
        self.text_column_names = names_list(self.text_column_names)
        self.label_names = names_list(self.label_names)
        if self.train_file and not self.text_column_names:
            raise UserError("--train_file needs --text_column_names: the column(s) holding the text.")
        if not self.train_file and (self.validation_file or self.test_file):
            raise UserError("--validation_file and --test_file go with --train_file (without it, NSMC is "
                            "used).")
        if self.train_file and not self.test_file:
            self.run_test = False  # nothing to test on; the data module says so

    @property
    def out_dir(self) -> Path:
        return Path(self.downstream_model_dir)


@dataclass
class PretrainConfig(RunConfig):
    """`python -m train.pretrain`: pre-training of a BERT from scratch (masked-LM or ELECTRA)."""

    texts: str = _help("Comma-separated text files, one review a line (plain or .gz), or rating files (their "
                       "documents).", "../shared/data/nsmc/reviews_unlabeled.txt.gz")
    output_dir: str = _help("Output folder: checkpoints/, logs/, export/ (a BERT folder that "
                            "`python -m train` fine-tunes).", "runs/pretrain")
    tokenizer: str | None = _help("A tokenizer folder to use; unset: train a WordPiece vocabulary on `texts` "
                                  "first.", None)
    vocab_size: int = _help("WordPiece vocabulary size when training one.", 16000)
    hidden_size: int = _help("Width of the BERT.", 256)
    num_hidden_layers: int = _help("Transformer layers.", 6)
    num_attention_heads: int = _help("Attention heads (hidden_size must divide by it).", 4)
    intermediate_size: int = _help("Feed-forward width (usually 4x hidden).", 1024)
    objective: str = _help("'mlm' (masked-language modelling, as BERT) or 'electra' (replaced-token "
                           "detection: a small generator fills the masks, the model tells which tokens were "
                           "replaced).", "mlm")
    mlm_probability: float = _help("Share of tokens masked (80% [MASK], 10% random, 10% kept).", 0.15)
    generator_hidden_size: int = _help("ELECTRA: the generator's width (a quarter of the model's in "
                                       "ELECTRA-Small).", 64)
    discriminator_weight: float = _help("ELECTRA: the weight of the replaced-token loss against the "
                                        "generator's masked-LM loss (50 in the paper).", 50.0)
    val_size: int = _help("Reviews held out to report the validation loss.", 5000)

    def __post_init__(self):
        super().__post_init__()
        if self.objective not in ("mlm", "electra"):
            raise UserError(f"--objective {self.objective!r}: choose mlm or electra.")

    @property
    def out_dir(self) -> Path:
        return Path(self.output_dir)


def names_list(value) -> list[str] | None:
    """Column or label names from YAML or flags: a list, a comma-separated string, or both mixed."""
    if value is None:
        return None
    items = [value] if isinstance(value, (str, int)) else value
    return [n.strip() for item in items for n in str(item).split(",") if n.strip()] or None


def parse_devices(devices) -> str:
    text = str(devices).strip().replace(" ", "")
    ok = (text == "auto" or text == "-1" or text.isdigit()
          or all(p.isdigit() for p in text.strip(",[]").split(",") if p) and text.strip(",[]"))
    if not ok:
        raise UserError(f"--devices {devices!r}: use 'auto', a count such as 2, or GPU indices such as 0,1.")
    return text


def lightning_devices(devices: str):
    if devices == "auto":
        return "auto"
    if "," in devices or devices.startswith("["):
        return [int(p) for p in devices.strip("[]").split(",") if p]
    return int(devices)


def validation_interval(value: float) -> float | int:
    """Lightning's val_check_interval: a float is a fraction of the epoch, an int a number of steps."""
    if value <= 0 or value > 1 and value != int(value):
        raise UserError(f"--val_check_interval {value:g}: use a fraction of the epoch (0.25) or a whole "
                        "number of steps (500).")
    return int(value) if value > 1 else value


def _type_of(f: dataclasses.Field):
    t = f.type if not isinstance(f.type, str) else eval(f.type, vars(typing) | {"Path": Path})  # noqa: S307 (our own annotations)
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if args else t


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse(cls, argv=None, description: str | None = None):
    """A config from defaults < YAML file (optional first argument) < --key value flags."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="a YAML file of settings (e.g. configs/smoke.yaml)")
    for f in dataclasses.fields(cls):
        t = _type_of(f)
        default = f.default if f.default is not dataclasses.MISSING else None
        kind = _bool if t is bool else t
        many = typing.get_origin(t) is list
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        nargs = "+" if many else "?" if t is bool else None  # `--resume` alone means `--resume true`
        parser.add_argument(*names, dest=f.name, type=str if many else kind, default=None, nargs=nargs,
                            const=True if t is bool else None, metavar="NAME" if many else t.__name__.upper(),
                            help=f"{f.metadata.get('help', '')} (default: {default})")
    args = parser.parse_args(argv)
    values: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            parser.error(f"config file {path} not found (see configs/ for presets)")
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            parser.error(f"{path}: unknown keys {sorted(unknown)}; see --help for the settings")
    values.update({k: v for k, v in vars(args).items() if k != "config" and v is not None})
    return cls(**values)


def to_yaml(config) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False, allow_unicode=True)
