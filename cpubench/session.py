"""Per-session state: each (model, backend) is built once, its answer on the photo computed once, and every
benchmark's numbers collected for the report."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend, BackendUnavailable, LoadContext, create_backend
from .errors import UsageError
from .images import DEFAULT_IMAGE, load_image, make_batch
from .models import BuiltModel, build_model
from .onnx_export import export_onnx
from .options import Settings
from .precision import Variant, cpu_lacks
from .report import BenchRow


@dataclass
class LoadedBackend:
    """A backend with the model built, its inputs ready and its answer on the photo."""

    model: str
    name: str
    backend: Backend
    inputs: Any
    logits: np.ndarray  # (classes,) for the first image of the batch
    load_seconds: float
    info: dict[str, Any]

    @property
    def top1(self) -> int:
        return int(np.argmax(self.logits))

    @property
    def classes(self) -> int:
        return int(self.logits.shape[-1])


class SuiteSession:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.image_path = Path(settings.image or DEFAULT_IMAGE)
        self.image = load_image(self.image_path)  # checked at start-up; each model gets its own size below
        self._images: dict[tuple, np.ndarray] = {}
        self._models: dict[str, BuiltModel] = {}
        self._onnx: dict[str, Path] = {}
        self._loaded: dict[tuple[str, str], LoadedBackend | BaseException] = {}
        self.results: list[BenchRow] = []
        self.verdicts: list[str] = []  # what each verdict checked and against what, for the report

    @property
    def default_image(self) -> bool:
        return self.settings.image is None

    def model(self, name: str) -> BuiltModel:
        if name not in self._models:
            # --weights goes into every torch-defined model, except that efficientnet_lite0 keeps the ImageNet
            # weights it ships with when other models run beside it (`--weights resnet18.pth` on the default run).
            keeps_own = name == "efficientnet_lite0" and len(self.settings.models) > 1
            self._models[name] = build_model(name, None if keeps_own else self.settings.weights,
                                             self.settings.batch_size, self.settings.input_size)
        return self._models[name]

    def image_for(self, name: str) -> np.ndarray:
        """The photo as this model wants it: its input size and normalisation, one image (batch 1)."""
        model = self.model(name)
        key = (model.input_shape[1:], model.mean, model.std)
        if key not in self._images:
            self._images[key] = load_image(self.image_path, model.input_shape[2:], model.mean, model.std,
                                           channels=model.input_shape[1])
        return self._images[key]

    def onnx_path(self, name: str) -> Path:
        if name not in self._onnx:
            self._onnx[name] = export_onnx(self.model(name))
        return self._onnx[name]

    def loaded(self, model: str, backend: str) -> LoadedBackend:
        """Build once; a failure is remembered and raised again rather than retried for every test."""
        key = (model, backend)
        if key not in self._loaded:
            try:
                self._loaded[key] = self._load(model, backend)
            except (UsageError, BackendUnavailable) as exc:
                self._loaded[key] = exc
        value = self._loaded[key]
        if isinstance(value, BaseException):
            raise value
        return value

    def build_outcome(self, model: str, backend: str) -> tuple[str, str]:
        """("built", "") / ("unavailable", why) / ("failed", why) / ("not built", "") for a verdict's message."""
        value = self._loaded.get((model, backend))
        if value is None:
            return "not built", ""
        if isinstance(value, BackendUnavailable):
            return "unavailable", str(value)
        if isinstance(value, BaseException):
            return "failed", str(value)
        return "built", ""

    def _load(self, model_name: str, backend_name: str) -> LoadedBackend:
        variant = Variant.parse(backend_name)
        backend = create_backend(variant.backend)
        if variant.precision not in backend.precisions:
            raise BackendUnavailable(f"{variant.backend} has no {variant.precision} path (it runs "
                                     f"{', '.join(backend.precisions)}); drop it from --precision or --backends")
        lacking = cpu_lacks(variant.precision)
        if lacking:
            raise BackendUnavailable(lacking)
        model = self.model(model_name)
        ctx = LoadContext(model=model, onnx_path=self.onnx_path(model_name), threads=self.settings.threads,
                          tuning_logs=self.settings.tuning_logs, tuning_log_exact=self.settings.tuning_log_exact,
                          tuning_log_name=self.settings.tuning_log, precision=variant.precision)
        started = time.perf_counter()
        ctx.info["precision"] = variant.precision
        backend.load(ctx)
        inputs = backend.prepare_inputs(make_batch(self.image_for(model_name), self.settings.batch_size))
        outputs = backend.forward(inputs)  # also the warm-up call: first-call allocations stay out of timing
        load_seconds = time.perf_counter() - started
        logits = backend.to_numpy(outputs)
        if logits.ndim != 2 or logits.shape[0] != self.settings.batch_size:
            raise UsageError(f"{backend_name} returned output of shape {logits.shape} for {model_name}, "
                             f"expected (batch, classes) = ({self.settings.batch_size}, N)")
        return LoadedBackend(model_name, backend_name, backend, inputs, logits[0], load_seconds, ctx.info)


def machine_summary() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_name": cpu, "python": platform.python_version()}
