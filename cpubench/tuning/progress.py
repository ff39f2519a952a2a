"""What a tuning run tells the person waiting: candidates measured, rate, time left, and the model's estimated
latency (Σ task weight × best latency), recorded as the tuning curve stored in the metadata."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class TaskProgress:
    name: str
    weight: float
    flop: float
    best_s: float = math.inf
    trials: int = 0


def fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class ProgressReporter:
    """Counts measured candidates and prints one line per search round: done/planned, rate, ETA, best latency."""

    def __init__(self, label: str, planned: int, emit: Callable[[str], None], started: float | None = None) -> None:
        self.label = label
        self.planned = planned
        self.emit = emit
        self.started = time.monotonic() if started is None else started
        self.done = 0
        self.failed = 0
        self.tasks: dict[str, TaskProgress] = {}
        self.total_tasks = 0
        # (minutes since the run started, candidates measured, estimated model ms): the tuning curve.
        self.history: list[tuple[float, int, float]] = []

    def seed(self, name: str, weight: float, best_s: float | None, total_tasks: int) -> None:
        """A task's starting point (a re-timed warm-start seed), so the estimate is complete from the start."""
        self.total_tasks = total_tasks
        task = self.tasks.setdefault(name, TaskProgress(name, weight, 0.0))
        if best_s is not None:
            task.best_s = min(task.best_s, best_s)

    def checkpoint(self) -> None:
        model_ms, measured = self.estimated_model_ms()
        if model_ms is not None and measured == self.total_tasks:
            self.history.append((round(self.elapsed / 60, 2), self.done, round(model_ms, 3)))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate_per_min(self) -> float:
        return 60.0 * self.done / self.elapsed if self.elapsed > 0 else 0.0

    def estimated_model_ms(self) -> tuple[float | None, int]:
        measured = [t for t in self.tasks.values() if math.isfinite(t.best_s)]
        if not measured:
            return None, 0
        return 1e3 * sum(t.weight * t.best_s for t in measured), len(measured)

    def built(self, count: int, failed: int) -> None:
        """A round of candidates finished building (they are timed right after): count them, print a line."""
        self.done += count
        self.failed += failed
        left = max(0, self.planned - self.done) / (self.rate_per_min / 60.0) if self.rate_per_min > 0 else math.inf
        model_ms, measured = self.estimated_model_ms()
        best = (f"best model ≈ {model_ms:.1f} ms ({measured}/{self.total_tasks} tasks timed)"
                if model_ms else "best model: not known yet")
        self.checkpoint()
        self.emit(f"[tune {self.label}] {min(self.done, self.planned)}/{self.planned} trials | "
                  f"{fmt_duration(self.elapsed)} elapsed, ~{fmt_duration(left)} left | "
                  f"{self.rate_per_min:.1f} trials/min | {best}")

    def observe(self, task_scheduler: Any, task_id: int, runner_results: list[Any]) -> None:
        """Measured results of one task (MetaSchedule hands them over when it next joins that task)."""
        self.total_tasks = max(self.total_tasks, len(task_scheduler.tasks_))
        record = task_scheduler.tasks_[task_id]
        name = str(record.ctx.task_name)
        if name not in self.tasks:
            self.tasks[name] = TaskProgress(name, float(record.task_weight), float(record.flop))
        task = self.tasks[name]
        for result in runner_results:
            task.trials += 1
            if result.error_msg is None and result.run_secs:
                secs = sorted(float(x) for x in result.run_secs)
                task.best_s = min(task.best_s, secs[len(secs) // 2])
