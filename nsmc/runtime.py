"""CPU backends for a loaded classifier: torch fp32, torch int8, ONNX Runtime fp32 and int8.

Every backend takes right-padded `input_ids` / `attention_mask` (tensors, arrays or lists) and
returns numpy logits, so a caller swaps backends with one argument. ONNX graphs are exported once
into a cache folder keyed by the model's files and the library versions (see `cache_folder`).
No `optimum`: its ONNX part would downgrade transformers to 4.x.
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
# Keeps accuracy within 0.2 points of fp32 at a fraction of the latency (bench/RESULTS.md).
DEFAULT_RUNTIME = "onnx-int8"
HELP = ("inference backend: torch (fp32), int8 (torch dynamic quantization), onnx (ONNX Runtime fp32), "
        "onnx-int8 (ONNX Runtime, dynamically quantized); the ONNX graph is exported once and cached")
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
    """The interface every backend has. `streams`: forward passes worth running side by side."""

    name = "?"
    streams = 1

    def logits(self, input_ids, attention_mask, wide: bool = False) -> np.ndarray:
        """(batch, num_labels) float32. `wide`: this pass runs alone, so it may use every core."""
        raise NotImplementedError

    def probs(self, input_ids, attention_mask, wide: bool = False) -> np.ndarray:
        z = self.logits(input_ids, attention_mask, wide).astype(np.float64)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class TorchRuntime(Runtime):
    """One pass at a time, threaded over every core by torch itself."""

    def __init__(self, model: torch.nn.Module, name: str = "torch"):
        self.model, self.name = model.eval(), name

    def logits(self, input_ids, attention_mask, wide: bool = False) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(input_ids=_as_tensor(input_ids), attention_mask=_as_tensor(attention_mask))
        return out.logits.float().numpy()


class OrtRuntime(Runtime):
    """Two sessions on one graph: one thread a pass when passes run side by side (a review is too
    little work to split over threads), every core when a pass runs alone."""

    def __init__(self, onnx_path: str | Path, name: str = "onnx", cores: int | None = None):
        self.streams = cores or usable_cores()
        self.narrow = self._session(onnx_path, 1)
        self.wide = self._session(onnx_path, self.streams) if self.streams > 1 else self.narrow
        self.input_names = [i.name for i in self.narrow.get_inputs()]
        self.name, self.path = name, Path(onnx_path)

    @staticmethod
    def _session(onnx_path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No busy-waiting between runs: spinning threads would steal the cores the tokenizer and
        # the web server need on a small machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def logits(self, input_ids, attention_mask, wide: bool = False) -> np.ndarray:
        feed = {"input_ids": _as_numpy(input_ids), "attention_mask": _as_numpy(attention_mask)}
        session = self.wide if wide else self.narrow
        (out,) = session.run(["logits"], {k: feed[k] for k in self.input_names})
        return out.astype(np.float32, copy=False)


def quantize_torch(model: torch.nn.Module, inplace: bool = False) -> torch.nn.Module:
    """int8 weights for every nn.Linear, on a copy unless `inplace`. `torch.ao.quantization` is
    deprecated (torchao succeeds it) but ships with torch and needs nothing extra."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8,
                                                      inplace=inplace)


# --- ONNX export and cache --------------------------------------------------------------------


class _LogitsOnly(torch.nn.Module):
    """(input_ids, attention_mask) -> logits: fixed input names, one plain output."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


@contextlib.contextmanager
def _quiet():
    """The exporter and the quantizer warn through `warnings` and `logging` about things a serving
    log does not need (torchvision missing, pre-processing advice)."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def export_onnx(model: torch.nn.Module, path: str | Path) -> Path:
    """torch.export-based ONNX export with dynamic batch and sequence axes."""
    from torch.export import Dim

    # Two rows, the second padded: the mask path is traced, and no axis has the size 1 that
    # torch.export would specialise on.
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    seq = Dim("sequence", min=1, max=int(getattr(model.config, "max_position_embeddings", 512)))
    axes = {0: Dim("batch", min=1, max=4096), 1: seq}
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.8e9  # protobuf's 2 GB limit
    with _quiet(), torch.no_grad():
        torch.onnx.export(_LogitsOnly(model).eval(), (ids, mask), str(path), input_names=list(INPUTS),
                          output_names=["logits"], dynamic_shapes={k: axes for k in INPUTS}, dynamo=True,
                          external_data=big, verbose=False, report=False)
    return Path(path)


def quantize_onnx(src: str | Path, dst: str | Path) -> Path:
    """int8 weights for MatMuls and embedding gathers; activations quantized per batch at run time,
    so no calibration data is needed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return Path(dst)


def cache_folder(model_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where a model's graphs live: keyed by its resolved path, each file's name, size and mtime,
    and the torch / onnxruntime versions, so retraining into the same folder builds afresh."""
    import onnxruntime

    path = Path(model_path).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.glob("*") if p.is_file())
    key = {"path": str(path), "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "format": 2}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir or os.environ.get("NSMC_RUNTIME_CACHE") or PROJECT_CACHE)
    return root / f"{path.name}-{digest}"


def ensure_onnx(model: torch.nn.Module, kind: str, folder: str | Path, log=None) -> Path:
    """`folder/kind/model.onnx` ("onnx" or "onnx-int8"), built if missing (int8 from the fp32 graph).
    Each graph is written in a temporary folder and renamed into place, so a crash never leaves half
    a graph that a later run trusts."""
    folder = Path(folder)
    for step in ("onnx", "onnx-int8")[: RUNTIMES.index(kind) - 1]:
        final = folder / step
        if (final / "model.onnx").is_file():
            continue
        if log:
            action = "Exporting to ONNX" if step == "onnx" else "Quantizing to int8"
            log(f"{action} (once; cached in {final})")
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{step}-"))
        try:
            if step == "onnx":
                export_onnx(model, tmp / "model.onnx")
            else:
                quantize_onnx(folder / "onnx" / "model.onnx", tmp / "model.onnx")
            try:
                os.replace(tmp, final)
            except OSError:  # another process published first: use theirs
                if not (final / "model.onnx").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder / kind / "model.onnx"


def build_runtime(model: torch.nn.Module, runtime: str = DEFAULT_RUNTIME, *, model_path=None,
                  cache_dir=None, inplace: bool = False, log=None) -> Runtime:
    """A backend for `model` (a loaded HF sequence classifier). `model_path` keys the ONNX cache;
    without one, or when the cache cannot be written, the graph is built in a temporary folder.
    `inplace`: let `int8` quantize `model` itself (only when nothing else uses the fp32 model)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    model = model.float().eval()
    if runtime == "torch":
        return TorchRuntime(model)
    if runtime == "int8":
        return TorchRuntime(quantize_torch(model, inplace=inplace), name="int8")
    if model_path is not None:
        try:
            folder = cache_folder(model_path, cache_dir)
            return OrtRuntime(ensure_onnx(model, runtime, folder, log), runtime)
        except OSError as e:  # e.g. a read-only checkout
            if log:
                log(f"Cannot write the ONNX cache ({e}); exporting to a temporary folder instead")
    with tempfile.TemporaryDirectory(prefix="nsmc-onnx-") as tmp:  # sessions read the graph when created
        return OrtRuntime(ensure_onnx(model, runtime, tmp, log), runtime)
