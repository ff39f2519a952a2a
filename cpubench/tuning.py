"""`pytest -m tune`: regenerate a model's MetaSchedule tuning log for this CPU, safely and resumably.

A run searches in its own work folder (`.cache/tuning-work/<model>/<target key>/`, kept between runs so an
interrupted run resumes from what it measured), then re-measures the best candidates of every task one at a
time with nothing else compiling, keeps the best record per workload, checks that the log covers every
tunable function, times the whole tuned model, and only then replaces `tuning_logs/<model>/<target key>/`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tvm_support as tv
from .cache import cache_root
from .errors import UsageError
from .log_finder import cpu_profile, describe_profile, seed_logs

DEFAULT_TRIALS = 3000
# Warm start (seeded from the nearest stored log, see log_finder): the seeds are already good schedules, so a
# smaller budget spent on the tasks where they cost the most time reaches a cold run's result in a fraction of
# its time. With a small evolutionary population (WARM_POPULATION) about 90 candidates a minute are measured, so
# 1200 keep `pytest -m tune --models resnet18` within 20 minutes on 2 cores (measured: 14m46s, 1.11x ORT).
DEFAULT_WARM_TRIALS = 1200
DEFAULT_TRIALS_PER_TASK = 256
# Candidates built and measured per search round. Each round pays a fixed cost (evolutionary search,
# cost-model update, a new builder pool); 64 keeps that cost small next to the builds.
TRIALS_PER_ITER = 64
# A candidate whose code takes longer than this to compile (huge explicit unrolls) is dropped: on a 2-core
# machine one such build stalls half the builder pool, and these candidates are not the fast ones.
BUILD_TIMEOUT_S = 15.0
# Warm start: rounds of 32 (a first round over the chosen tasks costs half as much as with 64), and only the
# tasks that together take this share of the seeded model's time are searched; the rest keep their seed.
WARM_TRIALS_PER_ITER = 32
WARM_TIME_SHARE = 0.97
# Warm start: MetaSchedule's default population (512, mostly random samples) makes each round of 32 cost more in
# evolutionary search than in measuring (37 candidates a minute here), and keeps few candidates near the seeds.
# 64, with at least 8 random members, stays near them and measures 90 a minute.
WARM_POPULATION = dict(population_size=64, init_measured_ratio=0.5, init_min_unmeasured=8, genetic_num_iters=4,
                       genetic_mutate_prob=0.85, genetic_max_fail_count=10, eps_greedy=0.05)
# Final clean measurement: how many of each task's best candidates are re-timed, and how.
REMEASURE_TOP_K = 5
WARM_START_FILE = "warm_start.json"


@dataclass(frozen=True)
class TuneBudget:
    trials: int | None = None  # None: DEFAULT_WARM_TRIALS when warm-started, else DEFAULT_TRIALS
    trials_per_task: int = DEFAULT_TRIALS_PER_TASK
    trials_per_iter: int | None = None  # None: WARM_TRIALS_PER_ITER when warm-started, else TRIALS_PER_ITER
    remeasure_top_k: int = REMEASURE_TOP_K

    def __post_init__(self) -> None:
        for name in ("trials", "trials_per_task", "trials_per_iter", "remeasure_top_k"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"tuning budget: {name} must be >= 1, got {value}")

    def resolved(self, warm: bool) -> TuneBudget:
        return TuneBudget(
            trials=self.trials or (DEFAULT_WARM_TRIALS if warm else DEFAULT_TRIALS),
            trials_per_task=self.trials_per_task,
            trials_per_iter=self.trials_per_iter or (WARM_TRIALS_PER_ITER if warm else TRIALS_PER_ITER),
            remeasure_top_k=self.remeasure_top_k)


@dataclass
class TaskProgress:
    name: str
    weight: float
    flop: float
    best_s: float = math.inf
    trials: int = 0


@dataclass
class TuneOutcome:
    log_dir: Path
    metadata: dict[str, Any]


def work_dir_for(model: str, key: str) -> Path:
    return cache_root() / "tuning-work" / model / key


def _fmt_duration(seconds: float) -> str:
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
                  f"{_fmt_duration(self.elapsed)} elapsed, ~{_fmt_duration(left)} left | "
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


def build_candidate(mod: Any, target: Any, _params: Any) -> Any:
    """MetaSchedule's default build without `import tvm.s_tir.tensor_intrin`.

    The default build function imports every tensor intrinsic TVM knows (23 s of CPU here) in each builder
    process, and the builder starts new processes every round: on 2 cores that import, not compiling, was
    most of the tuning time. Float32 CPU schedules use no tensor intrinsic, so it is not needed.
    """
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def make_builder(timeout_s: float, reporter: ProgressReporter | None = None, scheduler: Any = None) -> Any:
    """LocalBuilder with the lean build function. With a reporter and scheduler, each round also

    - first commits every measured-but-unjoined round to the database: MetaSchedule joins a task's results
      only when it picks that task again (after a whole round-robin of all tasks at the start), so a run
      killed in its first half hour would otherwise leave nothing to resume from;
    - prints a progress line once built.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    local = ms.builder.LocalBuilder(timeout_sec=timeout_s, f_build=build_candidate)
    if reporter is None:
        return local

    @derived_object
    class _ReportingBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            if scheduler is not None:
                for task_id, record in enumerate(scheduler.tasks_):
                    if record.runner_futures is not None:
                        scheduler.join_running_task(task_id)
            results = local.build(build_inputs)
            reporter.built(len(results), sum(r.error_msg is not None for r in results))
            return results

    return _ReportingBuilder()


def _measure_callbacks(reporter: ProgressReporter) -> list[Any]:
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class _Progress(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            reporter.observe(task_scheduler, task_id, runner_results)

    return [*ms.measure_callback.MeasureCallback.create("default"), _Progress()]


def make_runner(rpc_tracker: tuple[str, int] | None, rpc_key: str | None, config: Any) -> Any:
    """Local runner: measures one candidate at a time, and only after the round's builds are done.
    RPC runner: measures on devices registered with a TVM tracker under `rpc_key`."""
    from tvm.s_tir import meta_schedule as ms

    if rpc_tracker is None:
        return ms.runner.LocalRunner(timeout_sec=30, evaluator_config=config)
    host, port = rpc_tracker
    rpc_config = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=rpc_key,
                                     session_timeout_sec=60)
    try:  # a plain connection first: TVM's own client retries in a thread and raises there
        socket.create_connection((host, port), timeout=5).close()
        rpc_config.connect_tracker().summary()
    except Exception as exc:  # OSError for a refused port, plain errors from TVM's RPC for a dead tracker
        raise UsageError(f"--rpc-tracker {host}:{port}: cannot reach the tracker ({exc})") from None
    return ms.runner.RPCRunner(rpc_config=rpc_config, evaluator_config=config, max_workers=1)


SEARCH_EVALUATOR = dict(number=1, repeat=3, min_repeat_ms=20, enable_cpu_cache_flush=False)
CLEAN_EVALUATOR = dict(number=1, repeat=7, min_repeat_ms=100, enable_cpu_cache_flush=False)


def extract(lowered: Any, target: Any) -> list[Any]:
    from tvm.s_tir import meta_schedule as ms

    return [t for t in ms.relax_integration.extract_tasks(lowered, target)
            if not t.mod.attrs.get(tv.SCHEDULED_ATTR, False)]


def count_records(work_dir: Path) -> int:
    path = work_dir / tv.DB_FILES[1]
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def search(tasks: list[Any], target: Any, work_dir: Path, budget: TuneBudget, runner: Any,
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
    strategy = ms.search_strategy.EvolutionarySearch(**WARM_POPULATION) if warm else "evolutionary"
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
        tasks, work_dir=str(work_dir), num_threads="physical", seed=seed, strategy=strategy)
    scheduler = ms.task_scheduler.TaskScheduler.create("gradient")
    builder = make_builder(BUILD_TIMEOUT_S, reporter, scheduler)
    ms.tune.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=str(work_dir),
        max_trials_global=reporter.planned, max_trials_per_task=budget.trials_per_task,
        num_trials_per_iter=budget.trials_per_iter, builder=builder, runner=runner,
        database=ms.database.JSONDatabase(work_dir=str(work_dir)),
        measure_callbacks=_measure_callbacks(reporter), task_scheduler=scheduler)


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


def measure_model_ms(lowered: Any, target: Any, log_dir: Path, input_shape: tuple[int, ...],
                     repeat: int = 15) -> float:
    """Median latency of the whole tuned model, compiled from the log exactly as the `tvm-tuned` backend does."""
    import numpy as np
    import tvm

    applied, _ = tv.apply_database(lowered, target, tv.open_database(log_dir))
    lib_path = log_dir.parent / f".{log_dir.name}-check.so"
    try:
        tv.compile_module(tv.finish_tuned(applied, target), target, lib_path, seal=False)  # deleted below
        vm = tv.load_vm(lib_path)
        data = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(input_shape).astype("float32"))
        vm["main"](data)
        timer = vm.time_evaluator("main", tvm.cpu(), number=5, repeat=repeat)
        return float(np.median(timer(data).results)) * 1e3
    finally:
        lib_path.unlink(missing_ok=True)


def replace_log(staging: Path, destination: Path) -> None:
    """Swap the finished log in; the old one stays in place until the new one is complete on disk."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    retired = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    if destination.exists():
        os.replace(destination, retired)
    os.replace(staging, destination)
    shutil.rmtree(retired, ignore_errors=True)


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


def plant_seeds(tasks: list[Any], target: Any, choices: list[Any], work_dir: Path, runner: Any,
                emit: Callable[[str], None]) -> WarmStart:
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
            retimed, per_task = remeasure(tasks, target, seed_db, 1, runner, emit, label=f"seed {choice.log.key}")
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
) -> TuneOutcome:
    """Tune `relax_mod` on this CPU and store the log. Warm start (default): the work folder starts from the
    nearest compatible stored log (`warm_start_log` names one), re-timed here. `reference`, if given, times the
    reference backend right after the tuned model, for the ratio stored in the metadata."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    started_monotonic = time.monotonic()
    started = time.time()
    tv.set_runtime_threads(threads)
    target = tv.host_target(threads)
    key = tv.target_key(target, input_shape[0])
    destination = tuning_logs / model_name / key
    work_dir = work_dir or work_dir_for(model_name, key)
    if fresh and work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    lowered = tv.lower_for_tuning(relax_mod, target)
    tasks = extract(lowered, target)
    search_runner = make_runner(rpc_tracker, rpc_key, ms.runner.EvaluatorConfig(**SEARCH_EVALUATOR))

    warm = _resume_or_seed(tasks, target, model_name, input_shape, tuning_logs, threads, work_dir, warm_start,
                           warm_start_log, search_runner, emit)
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
        search(searched, target, work_dir, budget, search_runner, reporter, seed=seed, warm=warm is not None)
    search_seconds = time.time() - started

    clean_runner = make_runner(rpc_tracker, rpc_key, ms.runner.EvaluatorConfig(**CLEAN_EVALUATOR))
    clean_db, per_task = remeasure(tasks, target, ms.database.JSONDatabase(work_dir=str(work_dir)),
                                   budget.remeasure_top_k, clean_runner, emit)
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
        model_ms = measure_model_ms(lowered, target, staging, input_shape) if local else None
        reference_name, reference_ms = reference() if (reference and local) else (None, None)
        total_trials = count_records(work_dir) - (warm.seeds if warm else 0)
        host = cpu_profile()
        metadata = {
            "model": model_name,
            "tvm_version": tvm.__version__,
            "target": str(target),
            "cpu": tv.host_cpu(),
            **(describe_profile(host) if host else {}),
            "cores": threads,
            "batch_size": input_shape[0],
            "trials": total_trials,
            "trials_this_run": reporter.done,
            "trials_per_task_max": budget.trials_per_task,
            "trials_per_minute": round(reporter.rate_per_min, 1) if reporter.done else None,
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
            "ratio_to_reference": round(model_ms / reference_ms, 3) if model_ms and reference_ms else None,
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
    emit(f"[tune {model_name}] stored {destination}: {coverage.summary()}, model latency {ms_text}{ratio_text}, "
         f"{_fmt_duration(time.time() - started)} in all")
    return TuneOutcome(destination, metadata)


def _resume_or_seed(tasks: list[Any], target: Any, model_name: str, input_shape: tuple[int, ...],
                    tuning_logs: Path, threads: int, work_dir: Path, warm_start: bool, warm_start_log: str | None,
                    runner: Any, emit: Callable[[str], None]) -> WarmStart | None:
    """A resumed run keeps how it started; a new one is seeded from the nearest compatible log, if any."""
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
    choices = seed_logs(tuning_logs, model_name, threads, input_shape[0], named=warm_start_log)
    if not choices:
        emit(f"[tune {model_name}] cold start: no stored log of {model_name} fits this CPU")
        return None
    emit(f"[tune {model_name}] warm start from {', '.join(c.log.key for c in choices)} (nearest: "
         f"{choices[0].why}): re-timing their records here")
    return plant_seeds(tasks, target, choices, work_dir, runner, emit)
