"""The run's session: its parts wired together once, and what the benchmarks found. Each part does one job:

- ModelStore (model_store.py): what the pytest process builds (model, photo, ONNX export, int8 file, FLOPs);
- RunPlan (plan.py): which variants, what each worker builds, in how many processes each is timed;
- Launcher (launcher.py): the worker processes, the only part that knows they exist;
- Measurement (measurement.py): the joint interleaved timing of every variant with the yardstick;
- Int8Evaluation (int8_evaluation.py): int8's answers on the evaluation set.

docs/ARCHITECTURE.md follows one variant's data through them."""

from __future__ import annotations

from typing import Any

from .backends import BackendUnavailable
from .int8_evaluation import Int8Evaluation
from .launcher import Launcher
from .measurement import Measurement
from .model_store import ModelStore
from .options import Settings
from .plan import RunPlan
from .results import BenchRow


class SuiteSession:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ModelStore(settings)
        self.plan = RunPlan(settings, self.store)
        self.launcher = Launcher(self.plan)
        self.measurement = Measurement(self.launcher)
        self.int8 = Int8Evaluation(self.launcher)
        self.results: list[BenchRow] = []
        self.verdicts: list[str] = []  # what each verdict checked and against what, for the report

    def build_outcome(self, model: str, variant: str) -> tuple[str, str]:
        """("built", "") / ("unavailable", why) / ("failed", why) / ("not built", "") for a verdict's message."""
        value = self.launcher.outcome(model, variant)
        if value is None:
            return "not built", ""
        if isinstance(value, BackendUnavailable):
            return "unavailable", str(value)
        if isinstance(value, BaseException):
            return "failed", str(value)
        died = self.measurement.timing_failure(model, variant)
        if died is not None:
            return "failed", str(died)
        return "built", ""

    def judge(self, model: str, data: dict[str, Any]) -> tuple[Any, str]:
        """The regression gate on `model` (gate_judge.judge)."""
        from .gate_judge import judge

        return judge(self, model, data)

    def close(self) -> None:
        self.launcher.close()
