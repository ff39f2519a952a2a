"""Warm start: seed a new run's work folder from the nearest compatible stored logs, re-timed on this CPU, and
search only the tasks where those seeds cost the most time. A resumed run keeps how it started."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import tvm_support as tv
from ..errors import UsageError
from ..log_finder import seed_logs
from ..machine import CpuProfile
from .adapters import BuildPool
from .remeasure import remeasure
from .storage import count_records

WARM_START_FILE = "warm_start.json"
# Only the tasks that together take this share of the seeded model's time are searched; the rest keep their seed.
WARM_TIME_SHARE = 0.97


@dataclass
class WarmStart:
    """Where a warm-started run's seeds came from, and how fast they ran here when re-timed."""

    source: str  # the nearest stored log's key, e.g. znver4-2c
    why: str
    seeds: int  # records planted in the work folder (one per workload and source log)
    seed_us: dict[str, float | None]  # task name -> fastest re-timed seed here (None: every seed failed here)
    sources: list[str] = field(default_factory=list)  # every log that gave seeds, nearest first
    seed_from: dict[str, str] = field(default_factory=dict)  # task name -> the log whose seed was fastest here

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "why": self.why, "seeds": self.seeds, "seed_us": self.seed_us,
                "sources": self.sources, "seed_from": self.seed_from}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WarmStart:
        return cls(str(data["source"]), str(data.get("why", "")), int(data["seeds"]), dict(data["seed_us"]),
                   list(data.get("sources", [data["source"]])), dict(data.get("seed_from", {})))


def plant_seeds(tasks: list[Any], target: Any, choices: list[Any], work_dir: Path, builds: BuildPool,
                runner: Any, emit: Callable[[str], None]) -> WarmStart:
    """Re-time every compatible log's best record of each task on this CPU and commit them, with these timings,
    as the work folder's first records: MetaSchedule's evolutionary search draws its first population from the
    best records in the database, and compares new candidates with numbers measured here, not on the seeds' CPUs.
    Several logs give several seeds per task; the fastest here is where the search starts."""
    from tvm.s_tir import meta_schedule as ms

    work_db = ms.database.JSONDatabase(work_dir=str(work_dir))
    planted = 0
    best_us: dict[str, float | None] = {task.task_name: None for task in tasks}
    seed_from: dict[str, str] = {}
    for choice in choices:
        with tempfile.TemporaryDirectory(prefix="seeds-") as scratch:
            # A copy: opening a JSONDatabase and committing a workload appends to its files, and the stored log
            # must stay as it is.
            for name in tv.DB_FILES:
                shutil.copyfile(choice.log.path / name, Path(scratch) / name)
            seed_db = ms.database.JSONDatabase(work_dir=scratch)
            retimed, per_task = remeasure(tasks, target, seed_db, 1, builds, runner, emit,
                                          label=f"seed {choice.log.key}")
            retimed.dump_pruned(work_db)
        for result in per_task:
            us = result["best_us"]
            if us is None:
                continue
            planted += 1
            if best_us[result["task"]] is None or us < best_us[result["task"]]:
                best_us[result["task"]], seed_from[result["task"]] = us, choice.log.key
    nearest = choices[0]
    warm = WarmStart(nearest.log.key, nearest.why, planted, best_us, [c.log.key for c in choices], seed_from)
    (work_dir / WARM_START_FILE).write_text(json.dumps(warm.to_json(), indent=2) + "\n", encoding="utf-8")
    return warm


def tasks_worth_searching(tasks: list[Any], warm: WarmStart, share: float = WARM_TIME_SHARE) -> list[Any]:
    """The tasks where the seeds cost the most time: largest weight x seed latency first, until `share` of the
    seeded model's time is covered. A task whose seed failed here has no schedule yet and is always searched."""
    def cost(task: Any) -> float:
        us = warm.seed_us.get(task.task_name)
        return math.inf if us is None else float(task.weight) * us

    ranked = sorted(tasks, key=cost, reverse=True)
    total = sum(cost(t) for t in ranked if math.isfinite(cost(t))) or 1.0
    chosen, covered = [], 0.0
    for task in ranked:
        if not math.isfinite(cost(task)):
            chosen.append(task)
            continue
        if covered >= share * total:
            break
        chosen.append(task)
        covered += cost(task)
    return chosen


def resume_or_seed(tasks: list[Any], target: Any, model_name: str, input_shape: tuple[int, ...],
                   tuning_logs: Path, threads: int, work_dir: Path, warm_start: bool, warm_start_log: str | None,
                   builds: BuildPool, runner: Any, emit: Callable[[str], None],
                   profile: CpuProfile | None = None) -> WarmStart | None:
    """A resumed run keeps how it started; a new one is seeded from the logs nearest to `profile` (the CPU the code
    is tuned for; default this one), if any."""
    marker = work_dir / WARM_START_FILE
    if count_records(work_dir) > 0:
        if marker.is_file():
            try:
                return WarmStart.from_json(json.loads(marker.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                raise UsageError(f"{marker} is damaged; rerun with --tune-fresh to start over") from None
        return None
    if not warm_start:
        return None
    choices = seed_logs(tuning_logs, model_name, threads, input_shape[0], named=warm_start_log, host=profile)
    if not choices:
        emit(f"[tune {model_name}] cold start: no stored log of {model_name} fits "
             f"{profile.name if profile else 'this CPU'}")
        return None
    emit(f"[tune {model_name}] warm start from {', '.join(c.log.key for c in choices)} (nearest: "
         f"{choices[0].why}): re-timing their records here")
    return plant_seeds(tasks, target, choices, work_dir, builds, runner, emit)
