"""The search itself: the model's tunable tasks, and MetaSchedule's evolutionary search over them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import tvm_support as tv
from .adapters import BUILD_TIMEOUT_S, BuildPool, make_builder, measure_callbacks
from .budget import TuneBudget
from .progress import ProgressReporter

# Warm start: MetaSchedule's default population (512, mostly random samples) makes each round of 32 cost more in
# evolutionary search than in measuring (37 candidates a minute here), and keeps few candidates near the seeds.
# 64, with at least 8 random members, stays near them and measures 90 a minute.
WARM_POPULATION = dict(population_size=64, init_measured_ratio=0.5, init_min_unmeasured=8, genetic_num_iters=4,
                       genetic_mutate_prob=0.85, genetic_max_fail_count=10, eps_greedy=0.05)


def extract(lowered: Any, target: Any) -> list[Any]:
    from tvm.s_tir import meta_schedule as ms

    tv.import_tensor_intrinsics(target)

    return [t for t in ms.relax_integration.extract_tasks(lowered, target)
            if not t.mod.attrs.get(tv.SCHEDULED_ATTR, False)]


def search(tasks: list[Any], target: Any, work_dir: Path, budget: TuneBudget, builds: BuildPool, runner: Any,
           reporter: ProgressReporter, seed: int | None = None, warm: bool = False) -> None:
    """MetaSchedule's evolutionary search with an XGBoost cost model, records appended to work_dir."""
    from tvm.s_tir import meta_schedule as ms

    # MetaSchedule's own per-round tables go to work_dir/logs; the console gets our progress line instead.
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    ms_logger.setLevel(logging.WARNING)
    # MetaSchedule re-lists this logger's handlers by name when it configures logging; one without a name
    # (left by an earlier run in this process, or by a test harness) makes that fail.
    for handler in list(ms_logger.handlers):
        if handler.get_name() is None:
            ms_logger.removeHandler(handler)
    if budget.population is not None:
        strategy = ms.search_strategy.EvolutionarySearch(**{**WARM_POPULATION, "population_size": budget.population})
    else:
        strategy = ms.search_strategy.EvolutionarySearch(**WARM_POPULATION) if warm else "evolutionary"
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, work_dir=str(work_dir), num_threads="physical", seed=seed, strategy=strategy)
    scheduler = ms.task_scheduler.TaskScheduler.create("gradient")
    builder = make_builder(builds, BUILD_TIMEOUT_S, reporter, scheduler)
    ms.tune.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=str(work_dir),
        max_trials_global=reporter.planned, max_trials_per_task=budget.trials_per_task,
        num_trials_per_iter=budget.trials_per_iter, builder=builder, runner=runner,
        database=ms.database.JSONDatabase(work_dir=str(work_dir)),
        measure_callbacks=measure_callbacks(reporter), task_scheduler=scheduler)
