"""Fast CPU backends for a loaded classifier: torch fp32, torch int8, ONNX Runtime fp32 and int8.

    from nsmc.loading import load_classifier
    from nsmc.runtime import build_runtime
    model, tokenizer = load_classifier("models/nsmc-small")
    rt = build_runtime(model, "onnx-int8", model_path="models/nsmc-small")
    rt.logits(input_ids, attention_mask)     # np.ndarray (batch, num_labels), float32

Every backend takes the same right-padded `input_ids` / `attention_mask` (torch tensors, numpy
arrays or nested lists) and returns numpy logits, so a caller swaps backends with one argument.

- `torch`: the model as it is (fp32, `torch.inference_mode`).
- `int8`: torch dynamic quantization of every `nn.Linear` (int8 weights, activations quantized on
  the fly). Works on a copy: the model passed in is left untouched.
- `onnx`: `torch.onnx.export` (the torch.export-based exporter, the TorchScript one as a fallback)
  with dynamic batch and sequence axes, run by an ONNX Runtime `InferenceSession`: one thread a
  forward pass, as many passes at once as there are usable cores (`Runtime.streams`).
- `onnx-int8`: the same graph after `onnxruntime.quantization.quantize_dynamic` (int8 weights of
  the MatMuls with constant weights and of the embedding gathers).

ONNX files are exported once and cached under `cache_dir` (default `.cache/runtime/` in the
project, or `$NSMC_RUNTIME_CACHE`), in a folder keyed by the model's path, the names, sizes and
modification times of its files, and the torch / onnxruntime versions: retraining or re-exporting the
model into the same folder builds a fresh graph. Without a `model_path` the graph lives in a
temporary folder for as long as it takes to open the session. Folders appear atomically (written
under a temporary name, then renamed), so a crash never leaves half a graph that a later run trusts.

No Lightning here, and no `optimum` (its ONNX part would downgrade transformers to 4.x).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

RUNTIMES = ("torch", "int8", "onnx", "onnx-int8")
# The default because it keeps accuracy (88.26% vs 88.23% fp32 on the 50,000 test reviews, 99.81% agreement:
# bench/accuracy_runtimes.py) at a fraction of the latency (bench/RESULTS.md). The rule: <= 0.2 points lost.
DEFAULT_RUNTIME = "onnx-int8"
HELP = (
    "inference backend: torch (fp32), int8 (torch dynamic quantization), onnx (ONNX Runtime fp32), "
    "onnx-int8 (ONNX Runtime, dynamically quantized); the ONNX graph is exported once and cached"
)
PROJECT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "runtime"
INPUTS = ("input_ids", "attention_mask")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.int64, copy=False)
    return np.asarray(x, dtype=np.int64)


def _as_tensor(x) -> torch.Tensor:
    return x.long() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.int64))


class Runtime:
    """The interface every backend has."""

    name = "?"
    streams = 1  # forward passes that may run at the same time (torch threads each pass itself)

    def logits(self, input_ids, attention_mask) -> np.ndarray:  # (batch, num_labels) float32
        raise NotImplementedError

    def probs(self, input_ids, attention_mask) -> np.ndarray:
        z = self.logits(input_ids, attention_mask).astype(np.float64)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class TorchRuntime(Runtime):
    def __init__(self, model: torch.nn.Module, name: str = "torch"):
        self.model, self.name = model.eval(), name

    def logits(self, input_ids, attention_mask) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(input_ids=_as_tensor(input_ids), attention_mask=_as_tensor(attention_mask)).logits
        return out.float().numpy()


class OrtRuntime(Runtime):
    def __init__(self, onnx_path: str | Path, name: str = "onnx", threads: int = 1, streams: int | None = None,
                 spin: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread a pass and one pass a core, side by side (`InferenceSession.run` is thread-safe):
        # a review is too little work to split over threads, whose hand-offs then cost more than they
        # save. kcbert-base, batches of 32 on 2 cores (bench/speed.py): 51.7 reviews/s with one
        # 2-thread pass at a time, 86.9 with two 1-thread passes side by side.
        options.intra_op_num_threads = threads
        self.streams = streams or usable_cores()
        # No busy-waiting between runs: on a 2-vCPU box (a free Space) spinning pool threads steal the CPU
        # that the tokenizer, Gradio and any other session need; measured no slower here.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.name, self.path = name, Path(onnx_path)

    def logits(self, input_ids, attention_mask) -> np.ndarray:
        feed = {"input_ids": _as_numpy(input_ids), "attention_mask": _as_numpy(attention_mask)}
        (out,) = self.session.run(["logits"], {k: feed[k] for k in self.input_names})
        return out.astype(np.float32, copy=False)


# --- int8 (torch) -----------------------------------------------------------------------------


def quantize_torch(model: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    """int8 weights for every nn.Linear (dynamic quantization), on a copy unless `inplace` (which
    saves the fp32 copy's memory, ~440 MB for kcbert-base). `torch.ao.quantization` is deprecated
    (torchao is its successor) but still ships in torch 2.13 and needs nothing extra."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8, inplace=inplace)


# --- ONNX export and cache --------------------------------------------------------------------


class _LogitsOnly(torch.nn.Module):
    """(input_ids, attention_mask) -> logits: fixed input names, one plain output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_onnx(model: torch.nn.Module, path: str | Path, exporter: str = "dynamo") -> Path:
    """Export to `path` with dynamic batch and sequence axes. `exporter`: "dynamo" (torch.export,
    the default since torch 2.9) or "torchscript" (the legacy tracer, faster to export)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = _LogitsOnly(model).eval()
    # Two rows, the second padded: the mask path is traced, and no axis has the size 1 that
    # torch.export would specialise on.
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    max_len = int(getattr(model.config, "max_position_embeddings", 512))
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.8e9  # protobuf's 2 GB limit
    with warnings.catch_warnings(), _quiet_loggers(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            from torch.export import Dim

            batch, seq = Dim("batch", min=1, max=4096), Dim("sequence", min=1, max=max_len)
            torch.onnx.export(
                wrapped, (ids, mask), str(path), input_names=list(INPUTS), output_names=["logits"],
                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                dynamo=True, external_data=big, verbose=False, report=False,
            )
        elif exporter == "torchscript":
            axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}}
            torch.onnx.export(
                wrapped, (ids, mask), str(path), input_names=list(INPUTS), output_names=["logits"],
                dynamic_axes=axes, opset_version=17, dynamo=False,
            )
        else:
            raise ValueError(f"exporter must be 'dynamo' or 'torchscript', not {exporter!r}")
    return path


def quantize_onnx(src: str | Path, dst: str | Path) -> Path:
    """int8 weights for MatMuls with constant weights (and embedding gathers); activations are
    quantized per batch at run time, so no calibration data is needed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings(), _quiet_loggers():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return Path(dst)


@contextlib.contextmanager
def _quiet_loggers():
    """The exporter and the quantizer log progress at INFO/WARNING level through `logging` and print;
    a serving log does not need it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield
    finally:
        root.setLevel(level)


def model_fingerprint(model_path: str | Path) -> dict:
    """What identifies a saved model: its resolved path plus name, size and mtime of each file."""
    path = Path(model_path).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else []
    return {"path": str(path), "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]}


def cache_folder(model_path: str | Path, kind: str, cache_dir: str | Path | None = None, exporter: str = "dynamo") -> Path:
    import onnxruntime

    key = {"model": model_fingerprint(model_path), "exporter": exporter,
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "format": 1}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir or os.environ.get("NSMC_RUNTIME_CACHE") or PROJECT_CACHE)
    return root / f"{Path(model_path).resolve().name}-{digest}" / kind


def _publish(build, final: Path) -> Path:
    """Run `build(tmp_dir)` in a fresh temporary folder next to `final`, then rename it to `final`.
    If another process got there first, its folder is used and ours dropped."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
    try:
        build(tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "model.onnx").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "model.onnx"


def onnx_file(model, kind: str, model_path=None, cache_dir=None, exporter: str = "dynamo", work_dir: Path | None = None, log=None) -> Path:
    """Path of the (cached) ONNX graph of `kind` ("onnx" or "onnx-int8"), exporting if needed."""
    if model_path is None:  # nothing to key a cache on: build in the caller's scratch folder
        fp32 = work_dir / "onnx" / "model.onnx"
        if not fp32.is_file():
            _export_with_fallback(model, fp32, exporter, log)
        if kind == "onnx":
            return fp32
        (work_dir / "onnx-int8").mkdir(exist_ok=True)
        return quantize_onnx(fp32, work_dir / "onnx-int8" / "model.onnx")
    final = cache_folder(model_path, kind, cache_dir, exporter)
    if (final / "model.onnx").is_file():
        return final / "model.onnx"
    if kind == "onnx":
        if log:
            log(f"Exporting {model_path} to ONNX (once; cached in {final})")
        return _publish(lambda tmp: _export_with_fallback(model, tmp / "model.onnx", exporter, log), final)
    fp32 = onnx_file(model, "onnx", model_path, cache_dir, exporter, log=log)
    if log:
        log(f"Quantizing {fp32} to int8 (once; cached in {final})")
    return _publish(lambda tmp: quantize_onnx(fp32, tmp / "model.onnx"), final)


def _export_with_fallback(model, path: Path, exporter: str, log=None) -> Path:
    try:
        return export_onnx(model, path, exporter)
    except Exception as e:  # the torch.export route refuses some graphs; the tracer rarely does
        if exporter != "dynamo":
            raise
        if log:
            log(f"torch.export-based ONNX export failed ({type(e).__name__}: {str(e)[:200]}); using the TorchScript exporter")
        for p in path.parent.glob("*"):
            p.unlink()
        return export_onnx(model, path, "torchscript")


# --- the one entry point ----------------------------------------------------------------------


def build_runtime(model: torch.nn.Module, runtime: str = DEFAULT_RUNTIME, *, model_path: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None, threads: int = 1, exporter: str = "dynamo",
                  inplace: bool = False, log=None) -> Runtime:
    """A backend for `model` (a loaded, eval-mode HF sequence classifier). `model_path`: the folder
    or .ckpt it was loaded from (keys the ONNX cache; None exports to a temporary folder each time).
    `threads`: ONNX Runtime intra-op threads per forward pass (default 1, with one pass per usable
    core running side by side; torch backends use torch's own setting, see nsmc.inference.set_threads). `inplace`: let `int8` quantize `model`
    itself instead of a copy (only when nothing else uses the fp32 model afterwards)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    model = model.float().eval()
    if runtime == "torch":
        return TorchRuntime(model)
    if runtime == "int8":
        return TorchRuntime(quantize_torch(model, inplace=inplace), name="int8")
    if model_path is not None:
        try:
            return OrtRuntime(onnx_file(model, runtime, model_path, cache_dir, exporter, log=log), runtime, threads)
        except OSError as e:  # e.g. a read-only checkout: no cache, export for this process only
            if log:
                log(f"Cannot write the ONNX cache ({e}); exporting to a temporary folder instead")
    with tempfile.TemporaryDirectory(prefix="nsmc-onnx-") as tmp:  # ORT reads the whole graph at session creation
        return OrtRuntime(onnx_file(model, runtime, None, exporter=exporter, work_dir=Path(tmp), log=log), runtime, threads)
