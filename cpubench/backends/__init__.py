"""Backend registry: one module per runtime, the same small interface in each, imported only when selected."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from ..errors import UsageError
from ..models import BuiltModel

# name -> module (inside this package) that defines `Backend`; order is the report's row order.
BACKENDS: dict[str, str] = {
    "torch": "torch_eager",
    "torch-compile": "torch_compile",
    "onnxruntime": "onnxruntime_cpu",
    "openvino": "openvino_cpu",
    "executorch": "executorch_xnnpack",
    "litert": "litert_xnnpack",
    "tvm": "tvm_relax",
    "tvm-tuned": "tvm_relax",
}
# Runtimes that run the ONNX export and never need torch: their worker process refuses `import torch` (which
# apache-tvm-ffi would otherwise pull in), so no other runtime shares their process.
TORCH_FREE = frozenset({"onnxruntime", "openvino", "tvm", "tvm-tuned"})


@dataclass
class LoadContext:
    """What every backend gets to build a model: the same model, ONNX export, threads and options."""

    model: BuiltModel
    onnx_path: Path
    threads: int
    tuning_logs: Path
    precision: str = "fp32"  # see precision.py; a backend only gets one it lists in `precisions`
    # (for int8, `onnx_path` is the quantized QDQ model: cpubench/quantize.py)
    tuning_log_exact: bool = False  # tvm-tuned: only a log tuned on this CPU and core count
    tuning_log_name: str | None = None  # tvm-tuned: this log (a key under tuning_logs/<model>/, or a folder)
    info: dict[str, Any] = field(default_factory=dict)  # backends add context (versions, coverage...) here
    # Builds the torch module where it is needed (a worker gets the model without it); None: an ONNX file.
    module_factory: Callable[[], Any] | None = None
    calibration: Any = None  # int8 quantized in the worker (torch-compile): the calibration images (N, C, H, W)


class Backend(Protocol):
    name: str
    precisions: tuple[str, ...]  # what it can compute in ("fp32" always)
    # Optional: `precision_notes = {"int8": "why not"}`, said when a precision it lacks is asked for.

    def version(self) -> str: ...

    def load(self, ctx: LoadContext) -> None:
        """Build or compile the model; never timed."""

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        """Turn a float32 NCHW array into what `forward` takes; not timed."""

    def forward(self, inputs: Any) -> Any:
        """One inference: the timed part."""

    def to_numpy(self, outputs: Any) -> np.ndarray:
        """Logits as a float32 array of shape (batch, classes); not timed."""


class BackendUnavailable(Exception):
    """The backend cannot run here; the message says why and how to fix it (shown as a skip)."""


def require(module: str, package: str, hint: str) -> ModuleType:
    """Import a backend's runtime, or say which package is missing and how to install it (a skip with the fix)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"{package} is not installed ({exc}); {hint}") from None


def calibration_batches(ctx: LoadContext) -> Iterator[np.ndarray]:
    """Each calibration image as a batch of the size the model is built for (a quantizer's calibration calls)."""
    from ..images import make_batch

    for image in ctx.calibration if ctx.calibration is not None else ():
        yield make_batch(image, ctx.model.input_shape[0])


def has_torch_module(ctx: LoadContext, backend: str) -> None:
    """Skip a PyTorch-based backend for a model given as an ONNX file, which has no torch module, without building
    the module (a backend that only converts it builds it when it converts)."""
    if ctx.model.module is None and ctx.module_factory is None:
        raise BackendUnavailable(f"{ctx.model.name} is an ONNX file: {backend} needs the model as a torch module "
                                 "(the ONNX-based backends run it, onnxruntime is the reference)")


def torch_module(ctx: LoadContext, backend: str) -> Any:
    """The model as a torch module, built now if the worker has only its recipe."""
    has_torch_module(ctx, backend)
    if ctx.model.module is None:
        ctx.model = replace(ctx.model, module=ctx.module_factory())
    return ctx.model.module


def cached_conversion(ctx: LoadContext, kind: str, suffix: str, versions: dict[str, str],
                      convert: Callable[[], bytes]) -> Path:
    """A converted model file (torch-compile .pt2, ExecuTorch .pte, LiteRT .tflite) in the cache, keyed by model,
    weights, shape and the converter's versions; converted again when missing or damaged. What the conversion
    recorded in ctx.info (quantizer, calibration, its seconds...) is kept beside it (`<file>.info.json`) and given
    back on every later load, so a number from a cached file still says what produced it; `conversion` says
    whether it was converted in this run."""
    import json
    from importlib import metadata

    from ..cache import cached_build_info, cached_path, content_key, write_entry

    key = content_key(model=ctx.model.disk_key, weights=ctx.model.weights_digest, torch=metadata.version("torch"),
                      shape=ctx.model.input_shape, **versions)
    path = cached_path(kind, f"{ctx.model.disk_key}-{key}", suffix)
    info_path = path.with_name(path.name + ".info.json")
    recorded = cached_build_info(path, info_path)
    if recorded is None:
        before = dict(ctx.info)
        write_entry(path, convert())
        recorded = {k: v for k, v in ctx.info.items() if k not in before or before[k] != v}
        write_entry(info_path, json.dumps(recorded, default=str).encode())
        ctx.info["conversion"] = "converted in this run"
    else:
        ctx.info.update(recorded)
        ctx.info["conversion"] = "from the cache"
    return path


def validate_backend_names(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise UsageError(f"--backends: unknown backend {', '.join(map(repr, unknown))}; "
                         f"valid backends: {', '.join(BACKENDS)}")
    return names


def backend_module(name: str) -> str:
    """The dotted module that defines backend `name` (a registry value with a dot is already one: test plugins)."""
    module = BACKENDS[name]
    return module if "." in module else f"{__name__}.{module}"


def create_backend(name: str, precision: str = "fp32") -> Backend:
    """The backend, ready to load; BackendUnavailable (with the fix) when it cannot run `precision`."""
    validate_backend_names([name])
    backend = importlib.import_module(backend_module(name)).create(name)
    check_precision(backend, precision)
    return backend


def check_precision(backend: Backend, precision: str, name: str | None = None) -> None:
    """BackendUnavailable, with the fix, when `backend` (an instance, or its class with `name` given) has no
    `precision` path."""
    if precision not in backend.precisions:
        why = getattr(backend, "precision_notes", {}).get(precision)
        raise BackendUnavailable(f"{name or backend.name} has no {precision} path (it runs "
                                 f"{', '.join(backend.precisions)})" + (f": {why}" if why else "")
                                 + "; drop it from --precision or --backends")


def check_declared_precision(name: str, precision: str) -> None:
    """check_precision on the class that backend `name`'s `create` is annotated to return, without calling it (that
    may import the runtime): a precision the backend never has is refused before any worker starts. A backend whose
    class cannot be read this way is left to its worker."""
    module = importlib.import_module(backend_module(name))
    declared = vars(module).get(getattr(getattr(module, "create", None), "__annotations__", {}).get("return", ""))
    if isinstance(declared, type) and isinstance(getattr(declared, "precisions", None), tuple):
        check_precision(declared, precision, name)
