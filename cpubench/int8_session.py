"""int8's part of a session: each model's quantized file, made once, and each variant's answers on the evaluation
set, computed once in its worker, from which the agreement with float32 is counted. Never timed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import BackendUnavailable
from .errors import UsageError, remembered
from .precision import Variant
from .worker import WorkerDied, WorkerError

if TYPE_CHECKING:
    from .quantize import QuantizedModel
    from .session import SuiteSession

FAILURES = (UsageError, BackendUnavailable, WorkerDied)


class Int8Session:
    def __init__(self, suite: SuiteSession) -> None:
        self.suite = suite
        self._quantized: dict[str, Any] = {}  # model -> QuantizedModel, or why it could not be made
        self._logits: dict[tuple[str, str], Any] = {}  # (model, variant) -> logits on the evaluation set, or why not

    def quantized(self, name: str) -> QuantizedModel:
        """The model's int8 QDQ file (quantize.QuantizedModel), from its ONNX export and the calibration set, or
        from the cache."""
        return remembered(self._quantized, name, lambda: self._quantize(name), FAILURES)

    def _quantize(self, name: str) -> QuantizedModel:
        from .quantize import quantize_onnx

        try:
            return quantize_onnx(self.suite.model(name), self.suite.onnx_path(name), self.calibration(name))
        except ImportError as exc:
            raise BackendUnavailable(f"int8 is quantized with onnxruntime.quantization, which cannot be imported "
                                     f"({exc}); run `pip install -e .`") from None
        except Exception as exc:  # onnxruntime's quantizer raises many kinds; one line names the model and why
            raise UsageError(f"quantizing {name} to int8 failed: {type(exc).__name__}: {exc}") from None

    def calibration(self, name: str) -> np.ndarray:
        from .quantize import calibration_set

        return calibration_set(self.suite.model(name))

    def logits(self, model: str, variant: str) -> np.ndarray:
        """The variant's logits on every image of the evaluation set (quantize.evaluation_set)."""
        return remembered(self._logits, (model, variant), lambda: self._evaluate(model, variant), FAILURES)

    def _evaluate(self, model: str, variant: str) -> np.ndarray:
        from .quantize import evaluation_set

        worker = self.suite.loaded(model, variant).worker
        try:
            return worker.request("evaluate", evaluation_set(self.suite.model(model)),
                                  doing="classifying the evaluation set")
        except WorkerError as exc:
            raise UsageError(f"{variant} failed on the evaluation set: {exc}") from None

    def reference(self, model: str) -> str:
        """The float32 variant int8 is judged against: the model as written (torch), else ONNX Runtime; built for
        this if the run did not select it (never timed)."""
        from .agreement import REFERENCES

        reasons = []
        for name in REFERENCES:
            try:
                self.suite.loaded(model, name)
                return name
            except FAILURES as exc:
                reasons.append(f"{name}: {exc}")
        raise BackendUnavailable(f"no float32 reference for the evaluation set ({'; '.join(reasons)})")

    def agreement(self, model: str, variant: str) -> dict[str, Any]:
        """How often `variant` gives the float32 reference's top-1 on the evaluation set (agreement.agreement_rate)."""
        from .agreement import agreement_rate

        reference = self.reference(model)
        rate = agreement_rate(self.logits(model, reference), self.logits(model, variant),
                              Variant.parse(variant).precision)
        return {**rate, "reference": reference}
