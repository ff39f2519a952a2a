"""Re-measuring finalists: each task's best candidates timed again, one at a time, with nothing compiling."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from typing import Any

from .adapters import make_builder


def remeasure(tasks: list[Any], target: Any, source_db: Any, top_k: int, runner: Any,
              emit: Callable[[str], None], label: str = "remeasure") -> tuple[Any, list[dict[str, Any]]]:
    """Re-time each task's best `top_k` candidates with nothing compiling beside them; keep the best of each.

    During the search a lucky noisy reading can crown a mediocre candidate; timing the finalists again, with
    more repeats and all builds finished first, is what the stored log is ranked on.
    """
    from tvm.s_tir import meta_schedule as ms

    clean_db = ms.database.MemoryDatabase()
    builder = make_builder(60)
    per_task: list[dict[str, Any]] = []
    for task in tasks:
        mod = task.dispatched[0]
        workload = source_db.commit_workload(mod)
        records = source_db.get_top_k(workload, top_k)
        if not records:
            per_task.append({"task": task.task_name, "weight": int(task.weight), "best_us": None})
            continue
        candidates = [r.as_measure_candidate() for r in records]
        built = builder.build([ms.builder.BuilderInput(c.sch.mod, target) for c in candidates])
        inputs, kept = [], []
        for record, cand, result in zip(records, candidates, built, strict=False):
            if result.error_msg is not None:
                emit(f"[{label}] {task.task_name}: build failed: {result.error_msg.strip().splitlines()[-1]}")
                continue
            inputs.append(ms.runner.RunnerInput(result.artifact_path, "cpu", cand.args_info))
            kept.append(record)
        results = [f.result() for f in runner.run(inputs)] if inputs else []
        for result in built:
            if result.artifact_path:
                shutil.rmtree(os.path.dirname(result.artifact_path), ignore_errors=True)
        clean_workload = clean_db.commit_workload(mod)
        best = math.inf
        for record, result in zip(kept, results, strict=False):
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
        emit(f"[{label}] {task.task_name}: {len(kept)} finalists, best "
             f"{best * 1e6:.1f} us" if math.isfinite(best) else f"[remeasure] {task.task_name}: no valid finalist")
    return clean_db, per_task
