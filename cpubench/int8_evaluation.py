"""int8's answers on the evaluation set: each variant's logits, computed once in its worker (never timed), and how
often they give the float32 reference's top-1."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backends import BackendUnavailable
from .errors import UsageError, remembered
from .launcher import BUILD_FAILURES, Launcher
from .precision import Variant
from .worker import WorkerError


class Int8Evaluation:
    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.store = launcher.plan.store
        self._logits: dict[tuple[str, str], Any] = {}  # (model, variant) -> logits on the evaluation set, or why not

    def logits(self, model: str, variant: str) -> np.ndarray:
        """The variant's logits on every image of the evaluation set (quantize.evaluation_set), from its worker."""
        return remembered(self._logits, (model, variant), lambda: self._evaluate(model, variant), BUILD_FAILURES)

    def _evaluate(self, model: str, variant: str) -> np.ndarray:
        worker = self.launcher.build(model, variant).worker
        try:
            return worker.request("evaluate", self.store.evaluation_set(model), doing="classifying the evaluation set")
        except WorkerError as exc:
            raise UsageError(f"{variant} failed on the evaluation set: {exc}") from None

    def build_reference(self, model: str) -> str:
        """Build the float32 variant int8 is judged against (the model as written, torch, else ONNX Runtime) if the
        run has not (it is never timed), and name it."""
        from .agreement import REFERENCES

        reasons = []
        for name in REFERENCES:
            try:
                self.launcher.build(model, name)
                return name
            except BUILD_FAILURES as exc:
                reasons.append(f"{name}: {exc}")
        raise BackendUnavailable(f"no float32 reference for the evaluation set ({'; '.join(reasons)})")

    def agreement(self, model: str, variant: str) -> dict[str, Any]:
        """How often `variant` gives the float32 reference's top-1 on the evaluation set (agreement.agreement_rate)."""
        from .agreement import agreement_rate

        reference = self.build_reference(model)
        rate = agreement_rate(self.logits(model, reference), self.logits(model, variant),
                              Variant.parse(variant).precision)
        return {**rate, "reference": reference}
