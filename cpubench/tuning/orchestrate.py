"""One tuning run from start to stored log: search, re-measure, coverage check, whole-model timing, and the
metadata stored beside the log."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import tvm_support as tv
from ..errors import UsageError
from ..log_finder import cpu_profile, describe_profile
from ..machine import cpu_model_name, tuning_profile
from ..winograd import DIRECT
from .adapters import CLEAN_EVALUATOR, SEARCH_EVALUATOR, BuildPool, make_runner
from .budget import TuneBudget
from .model_timing import measure_model_ms
from .progress import ProgressReporter, fmt_duration
from .remeasure import remeasure
from .search import extract, search
from .storage import count_records, replace_log, work_dir_for
from .warm_start import resume_or_seed, tasks_worth_searching


@dataclass
class TuneOutcome:
    log_dir: Path
    metadata: dict[str, Any]


def tune_model(
    *,
    model_name: str,
    relax_mod: Any,
    input_shape: tuple[int, ...],
    tuning_logs: Path,
    threads: int,
    budget: TuneBudget,
    fresh: bool = False,
    warm_start: bool = True,
    warm_start_log: str | None = None,
    rpc_tracker: tuple[str, int] | None = None,
    rpc_key: str | None = None,
    emit: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    seed: int | None = None,
    work_dir: Path | None = None,
    measure_model: bool = True,
    reference: Callable[[], tuple[str, float]] | None = None,
    tune_target: str | None = None,
    measure: Callable[[Path], dict[str, Any]] | None = None,
    lowering: str = DIRECT,
) -> TuneOutcome:
    """Tune `relax_mod` on this CPU and store the log. Warm start (default): the work folder starts from the
    nearest compatible stored log (`warm_start_log` names one), re-timed here. `reference`, if given, times the
    reference backend right after the tuned model, for the ratio stored in the metadata. `tune_target` (an LLVM CPU
    name or ISA level such as `x86-64-v3`) tunes code for that CPU instead of this one, still timed here: the log
    is stored under its name, with this machine in `timed_on`. `measure`, if given, times the finished log as a
    benchmark run would (`model_timing.time_in_workers`: tuned model and reference in worker processes of their own,
    interleaved) in place of timing it in this process and calling `reference`. `lowering` (winograd.py) is how
    3x3 convolutions are computed (`pytest -m tune` passes --tune-lowering, default winograd); it is stored in the
    metadata, and `tvm-tuned` compiles the log the same way."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    started_monotonic = time.monotonic()
    started = time.time()
    tv.set_runtime_threads(threads)
    host = cpu_profile()
    try:
        profile = tuning_profile(tune_target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    target = tv.host_target(threads, profile.name)
    key = tv.target_key(target, input_shape[0])
    destination = tuning_logs / model_name / key
    # A lowering's tasks are other functions: its measurements go to a work folder of its own.
    work_dir = work_dir or work_dir_for(model_name, key if lowering == DIRECT else f"{key}-{lowering}")
    if fresh and work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    # One runner and one pool of builder processes for the whole run (each process imports TVM once: see
    # BuildPool). An RPC runner first: an unreachable tracker stops the run before anything starts. The local
    # runner's process and the builders start while the model is lowered and its tasks extracted.
    config = ms.runner.EvaluatorConfig(**SEARCH_EVALUATOR)
    runner = make_runner(rpc_tracker, rpc_key, config) if rpc_tracker else None
    builds = BuildPool()
    try:
        with ThreadPoolExecutor(max_workers=1) as starter:
            local_runner = starter.submit(make_runner, None, None, config) if runner is None else None
            lowered = tv.lower_for_tuning(relax_mod, target, lowering)
            tasks = extract(lowered, target)
            if local_runner is not None:
                runner = local_runner.result()

        warm = resume_or_seed(tasks, target, model_name, input_shape, tuning_logs, threads, work_dir, warm_start,
                              warm_start_log, builds, runner, emit, profile)
        budget = budget.resolved(warm is not None)
        already = count_records(work_dir) - (warm.seeds if warm else 0)
        planned = max(0, budget.trials - already)
        searched = tasks_worth_searching(tasks, warm) if warm else tasks
        emit(f"[tune {model_name}] target {target} -> {destination}; {len(tasks)} tasks"
             + (f", warm start from {', '.join(warm.sources)} ({warm.seeds} seeds re-timed here), searching the "
                f"{len(searched)} where they cost the most time" if warm else ", cold start")
             + f"; {already} candidates already measured in {work_dir}, {planned} to go")

        reporter = ProgressReporter(model_name, planned, emit, started=started_monotonic)
        for task in tasks:
            us = warm.seed_us.get(task.task_name) if warm else None
            reporter.seed(task.task_name, float(task.weight), us / 1e6 if us is not None else None, len(tasks))
        reporter.checkpoint()
        if planned > 0:
            search(searched, target, work_dir, budget, builds, runner, reporter, seed=seed, warm=warm is not None)
        search_seconds = time.time() - started
        # candidates a minute from the run's start to the search's end (as the progress line shows it), not diluted
        # by the re-measure and the model's timing after it
        search_rate = reporter.rate_per_min

        runner.evaluator_config = ms.runner.EvaluatorConfig(**CLEAN_EVALUATOR)  # the same runner process
        clean_db, per_task = remeasure(tasks, target, ms.database.JSONDatabase(work_dir=str(work_dir)),
                                       budget.remeasure_top_k, builds, runner, emit)
    finally:
        builds.close()
    staging = destination.with_name(f".{key}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        clean_db.dump_pruned(ms.database.JSONDatabase(work_dir=str(staging)))
        _, coverage = tv.apply_database(lowered, target, tv.open_database(staging))
        if not coverage.complete:
            raise UsageError(
                f"tuning {model_name} ended without a valid schedule for {', '.join(coverage.missing)}; "
                f"the stored log {destination} is unchanged. Raise --tune-trials (or --tune-trials-per-task) "
                f"and rerun: measurements so far are kept in {work_dir}")
        local = measure_model and rpc_tracker is None
        # What the finished log is, for whoever reads it before the final metadata is written (a worker that
        # compiles it finds its CPU and features here).
        (staging / tv.METADATA_FILE).write_text(json.dumps(
            {"model": model_name, "cpu": profile.name, **describe_profile(profile), "cores": threads,
             "batch_size": input_shape[0], "lowering": lowering}) + "\n", encoding="utf-8")
        timing: dict[str, Any] = {}
        if local and measure is not None:
            timing = measure(staging)
            model_ms, reference_name, reference_ms = timing["model_ms"], timing["reference_backend"], \
                timing["reference_ms"]
        else:
            model_ms = measure_model_ms(lowered, target, staging, input_shape) if local else None
            reference_name, reference_ms = reference() if (reference and local) else (None, None)
        total_trials = count_records(work_dir) - (warm.seeds if warm else 0)
        metadata = {
            "model": model_name,
            "tvm_version": tvm.__version__,
            "target": str(target),
            "cpu": profile.name,
            **describe_profile(profile),
            "timed_on": {"cpu": host.name if host else tv.host_cpu(), "cpu_model": cpu_model_name(),
                         **({"vector_isa": host.vector_isa, "isa_level": host.isa_level} if host else {})},
            "cores": threads,
            "batch_size": input_shape[0],
            "lowering": lowering,
            "trials": total_trials,
            "trials_this_run": reporter.done,
            "trials_per_task_max": budget.trials_per_task,
            "trials_per_minute": round(search_rate, 1) if reporter.done else None,
            "search_seconds": round(search_seconds),
            "total_seconds": round(time.time() - started),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "measured_on": f"rpc {rpc_tracker[0]}:{rpc_tracker[1]} key {rpc_key}" if rpc_tracker else "local",
            "warm_start_from": warm.source if warm else None,
            "warm_start": warm.to_json() if warm else None,
            "searched_tasks": [t.task_name for t in searched],
            "model_latency_ms": round(model_ms, 3) if model_ms is not None else None,
            "reference_backend": reference_name,
            "reference_latency_ms": round(reference_ms, 3) if reference_ms is not None else None,
            "ratio_to_reference": round(timing["ratio"], 3) if timing else
            round(model_ms / reference_ms, 3) if model_ms and reference_ms else None,
            **({"ratio_interval": [round(timing["ratio_low"], 3), round(timing["ratio_high"], 3)],
                "model_timed": timing["timed"], "machine_load_while_timed": timing.get("machine_load")} if timing else
               {"model_timed": "in the tuning process (time_evaluator), the reference after it" if model_ms
                else None}),
            "coverage": coverage.summary(),
            "progress": [list(point) for point in reporter.history],
            "tasks": per_task,
        }
        (staging / tv.METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        replace_log(staging, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ms_text = f"{model_ms:.2f} ms" if model_ms is not None else "n/a"
    ratio_text = (f", {metadata['ratio_to_reference']:.2f}x {reference_name} ({reference_ms:.2f} ms)"
                  if metadata["ratio_to_reference"] else "")
    load = (timing or {}).get("machine_load")
    load_text = f"; while timed, {load['said']}" if load else ""
    emit(f"[tune {model_name}] stored {destination}: {coverage.summary()}, model latency {ms_text}{ratio_text}, "
         f"{fmt_duration(time.time() - started)} in all{load_text}")
    return TuneOutcome(destination, metadata)
