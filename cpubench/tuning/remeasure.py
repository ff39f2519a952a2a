"""Re-measuring finalists: each task's best candidates timed again, one at a time, with nothing compiling: all of
them built first, in one call, then all timed, in one call."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from typing import Any

from .adapters import BuildPool

FINALIST_BUILD_TIMEOUT_S = 60.0  # finalists built once already; a busy machine must not drop one


def remeasure(tasks: list[Any], target: Any, source_db: Any, top_k: int, builds: BuildPool, runner: Any,
              emit: Callable[[str], None], label: str = "remeasure") -> tuple[Any, list[dict[str, Any]]]:
    """Re-time each task's best `top_k` candidates with nothing compiling beside them; keep the best of each.

    During the search a lucky noisy reading can crown a mediocre candidate; timing the finalists again, with
    more repeats and all builds finished first, is what the stored log is ranked on.
    """
    from tvm.s_tir import meta_schedule as ms

    clean_db = ms.database.MemoryDatabase()
    # Every task's finalists in one build and one run: all builds end before anything is timed.
    finalists: list[tuple[Any, Any, list[Any]]] = []  # (task, its workload in clean_db, its top records)
    candidates = []
    for task in tasks:
        mod = task.dispatched[0]
        records = source_db.get_top_k(source_db.commit_workload(mod), top_k)
        finalists.append((task, clean_db.commit_workload(mod), records))
        candidates += [(task, r, r.as_measure_candidate()) for r in records]
    built = builds.build([ms.builder.BuilderInput(c.sch.mod, target) for _, _, c in candidates],
                         FINALIST_BUILD_TIMEOUT_S) if candidates else []
    inputs, kept = [], []
    for (task, record, cand), result in zip(candidates, built, strict=True):
        if result.error_msg is not None:
            emit(f"[{label}] {task.task_name}: build failed: {result.error_msg.strip().splitlines()[-1]}")
            continue
        inputs.append(ms.runner.RunnerInput(result.artifact_path, "cpu", cand.args_info))
        kept.append((task, record))
    results = [f.result() for f in runner.run(inputs)] if inputs else []
    for result in built:
        if result.artifact_path:
            shutil.rmtree(os.path.dirname(result.artifact_path), ignore_errors=True)
    timed: dict[str, list[tuple[Any, Any]]] = {}
    for (task, record), result in zip(kept, results, strict=True):
        timed.setdefault(task.task_name, []).append((record, result))
    per_task: list[dict[str, Any]] = []
    for task, clean_workload, records in finalists:
        if not records:
            per_task.append({"task": task.task_name, "weight": int(task.weight), "best_us": None})
            continue
        best = math.inf
        runs = timed.get(task.task_name, [])
        for record, result in runs:
            if result.error_msg is not None or not result.run_secs:
                emit(f"[{label}] {task.task_name}: run failed: {(result.error_msg or '').strip().splitlines()[-1:]}")
                continue
            secs = sorted(float(x) for x in result.run_secs)
            best = min(best, secs[len(secs) // 2])
            clean_db.commit_tuning_record(ms.database.TuningRecord(
                record.trace, clean_workload, [float(x) for x in result.run_secs], target,
                record.args_info))
        per_task.append({"task": task.task_name, "weight": int(task.weight),
                         "best_us": round(best * 1e6, 1) if math.isfinite(best) else None})
        emit(f"[{label}] {task.task_name}: {len(runs)} finalists, best {best * 1e6:.1f} us" if math.isfinite(best)
             else f"[{label}] {task.task_name}: no valid finalist")
    return clean_db, per_task
