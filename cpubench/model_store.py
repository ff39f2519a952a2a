"""What the pytest process itself builds, once per model: the torch model, the photo at its input size, the ONNX
export, the int8 QDQ file with its calibration set, and the FLOP count. Nothing here starts a process or times
anything; the workers receive these (launcher.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import BackendUnavailable
from .errors import UsageError, remembered
from .images import DEFAULT_IMAGE, load_image
from .models import BuiltModel, build_model
from .options import Settings

if TYPE_CHECKING:
    from .flops import FlopCount
    from .quantize import QuantizedModel

FAILURES = (UsageError, BackendUnavailable)


class ModelStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.image_path = Path(settings.image or DEFAULT_IMAGE)
        self.image = load_image(self.image_path)  # checked at start-up; each model gets its own size below
        self._images: dict[tuple, np.ndarray] = {}
        self._models: dict[str, BuiltModel] = {}
        self._onnx: dict[str, Path] = {}
        self.export_seconds: dict[str, float] = {}
        self._quantized: dict[str, Any] = {}  # model -> QuantizedModel, or why it could not be made
        self._flops: dict[str, FlopCount | None] = {}

    @property
    def default_image(self) -> bool:
        return self.settings.image is None

    def model(self, name: str) -> BuiltModel:
        if name not in self._models:
            self._models[name] = build_model(name, self.weights_for(name), self.settings.batch_size,
                                             self.settings.input_size)
        return self._models[name]

    def weights_for(self, name: str) -> Path | None:
        # --weights goes into every torch-defined model, except that efficientnet_lite0 keeps the ImageNet
        # weights it ships with when other models run beside it (`--weights resnet18.pth` on the default run).
        keeps_own = name == "efficientnet_lite0" and len(self.settings.models) > 1
        return None if keeps_own else self.settings.weights

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
            from .onnx_export import export_onnx

            started = time.perf_counter()
            self._onnx[name] = export_onnx(self.model(name))
            self.export_seconds[name] = time.perf_counter() - started
        return self._onnx[name]

    def quantized(self, name: str) -> QuantizedModel:
        """The model's int8 QDQ file (quantize.QuantizedModel), from its ONNX export and the calibration set, or
        from the cache. A failure is remembered and raised again."""
        return remembered(self._quantized, name, lambda: self._quantize(name), FAILURES)

    def _quantize(self, name: str) -> QuantizedModel:
        from .quantize import quantize_onnx

        try:
            return quantize_onnx(self.model(name), self.onnx_path(name), self.calibration(name))
        except ImportError as exc:
            raise BackendUnavailable(f"int8 is quantized with onnxruntime.quantization, which cannot be imported "
                                     f"({exc}); run `pip install -e .`") from None
        except Exception as exc:  # onnxruntime's quantizer raises many kinds; one line names the model and why
            raise UsageError(f"quantizing {name} to int8 failed: {type(exc).__name__}: {exc}") from None

    def calibration(self, name: str) -> np.ndarray:
        from .quantize import calibration_set

        return calibration_set(self.model(name))

    def evaluation_set(self, name: str) -> np.ndarray:
        from .quantize import evaluation_set

        return evaluation_set(self.model(name))

    def flop_count(self, name: str) -> FlopCount | None:
        """The model's FLOPs (flops.FlopCount), counted from its ONNX graph (every model has one: an exported torch
        model or an `onnx:` file); None when the graph cannot be counted."""
        if name not in self._flops:
            from .flops import onnx_flops

            self._flops[name] = onnx_flops(self.onnx_path(name))
        return self._flops[name]

    def flops(self, name: str) -> int | None:
        """FLOPs of one forward pass of the whole batch (2 per multiply-add), None when they cannot be counted."""
        count = self.flop_count(name)
        return count.total if count is not None and count.total else None

    def padding_allowance(self, name: str) -> float:
        """How much faster than its counted FLOPs allow a convolution that skips padded taps may run."""
        from .flops import padding_allowance

        count = self.flop_count(name)
        return padding_allowance(count) if count is not None and count.total else 1.0

    def winograd_allowance(self, name: str) -> float:
        """How much faster than its direct FLOPs allow a Winograd build of this model may plausibly run."""
        from .flops import winograd_allowance

        count = self.flop_count(name)
        return winograd_allowance(count) if count is not None and count.total else 1.0
