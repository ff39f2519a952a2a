"""The launcher: the one place that knows worker processes exist. It starts them as the plan says (plan.py), has
each build its variant, keeps every variant's first process and its answer on the photo, pools further processes
of a variant for timing, starts the yardstick's kernels, and ends them all."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backends import TORCH_FREE, BackendUnavailable
from .cache import relative_artifact_path
from .errors import UsageError, remembered
from .plan import RunPlan
from .schedule import ProcessRotation
from .worker import BuildRequest, Worker, WorkerDied, WorkerError, close_all
from .yardstick import KERNELS

STARTING_AT_ONCE = 2  # extra processes built at once (never while anything is timed)
BUILD_FAILURES = (UsageError, BackendUnavailable, WorkerDied)


@dataclass
class BuiltVariant:
    """A variant built in its first worker process: its answer on the photo, and what building it cost."""

    model: str
    key: str  # the variant's key: `openvino`, `openvino-bf16`
    backend: str  # the backend's own name for itself, e.g. `onnxruntime`
    version: str
    worker: Worker
    logits: np.ndarray  # (classes,) for the first image of the batch
    load_seconds: float  # the backend's load (export excepted: the pytest process does that, once per model)
    info: dict[str, Any]
    process: dict[str, Any] = field(default_factory=dict)  # cold start, memory, artifact size: see `columns`

    @property
    def top1(self) -> int:
        return int(np.argmax(self.logits))

    @property
    def classes(self) -> int:
        return int(self.logits.shape[-1])


class Launcher:
    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.settings = plan.settings
        self._built: dict[tuple[str, str], BuiltVariant | BaseException] = {}
        self._rotations: dict[tuple[str, str], ProcessRotation] = {}  # pooled processes, per (model, variant)
        self._pool_failures: dict[tuple[str, str], UsageError] = {}  # variants whose processes disagreed
        self._kernels: dict[str, tuple[Worker, dict[str, Any]] | BaseException] = {}  # the yardstick's workers

    def build(self, model: str, key: str) -> BuiltVariant:
        """Start the variant's first worker and build it there, once; a failure is remembered and raised again
        rather than retried for every test."""
        return remembered(self._built, (model, key), lambda: self._build_first(model, key), BUILD_FAILURES)

    def build_all(self, wanted: list[tuple[str, str]], jobs: int) -> None:
        """Build the first process of every (model, variant) in `wanted` not built yet, `jobs` at a time (--build-jobs;
        nothing is timed meanwhile). With jobs > 1 each build's cold start and build time are measured beside
        others', and the variant says so (`built_at_once`). Failures are remembered as `build` remembers them."""
        todo = [pair for pair in dict.fromkeys(wanted) if pair not in self._built]
        if jobs < 2 or len(todo) < 2:
            return  # each is built alone when first asked
        running: dict[Future, tuple[str, str]] = {}
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            while todo or running:
                while todo and len(running) < jobs:
                    model, key = pair = todo.pop(0)
                    try:  # started from this thread (see _launch); built in a pool thread
                        self.plan.variant(key)  # an unknown backend or a precision this CPU lacks starts nothing
                        worker, request = self._launch(model, key)
                    except BUILD_FAILURES as exc:
                        self._built[pair] = exc
                        continue
                    running[pool.submit(self._build_first, model, key, (worker, request))] = pair
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    pair = running.pop(future)
                    try:
                        self._built[pair] = future.result()
                        self._built[pair].process["built_at_once"] = jobs
                    except BUILD_FAILURES as exc:
                        self._built[pair] = exc

    def outcome(self, model: str, key: str) -> BuiltVariant | BaseException | None:
        """What `build` gave so far, without building: the variant, why it failed, or None if never asked."""
        return self._built.get((model, key))

    def pool_failure(self, model: str, key: str) -> UsageError | None:
        """Why the variant's timing processes disagreed with its first, if they did."""
        return self._pool_failures.get((model, key))

    def _build_first(self, model_name: str, key: str,
                     launched: tuple[Worker, BuildRequest] | None = None) -> BuiltVariant:
        variant = self.plan.variant(key)
        worker, request = launched or self._launch(model_name, key)
        built = self._request_build(worker, request)
        cold_start = time.perf_counter() - worker.started_at
        logits = built["logits"]
        if logits.ndim != 2 or logits.shape[0] != self.settings.batch_size:
            worker.close()
            raise UsageError(f"{key} returned output of shape {logits.shape} for {model_name}, "
                             f"expected (batch, classes) = ({self.settings.batch_size}, N)")
        process = {
            "cold_start_seconds": cold_start, "import_seconds": built["import_seconds"],
            "first_call_seconds": built["first_call_seconds"],
            "rss_after_build_mib": built["rss_after_build_kib"] / 1024,
            "peak_build_mib": built["peak_build_kib"] / 1024,
            # relative to the cache (`.cache/onnx/...`): a results file travels, a machine's paths do not
            "artifact": relative_artifact_path(built["artifact"]) if built["artifact"] else None,
            "artifact_bytes": built["artifact_bytes"],
            "runtimes_in_process": built["runtimes_in_process"], "worker_pid": worker.pid,
            "peak_reset": built["peak_reset"],
        }
        info = built["info"]
        if variant.precision == "int8" and variant.backend in TORCH_FREE:
            info.update(self.plan.store.quantized(model_name).info)
        return BuiltVariant(model_name, key, built["backend_name"], built["version"], worker, logits[0],
                            built["load_seconds"], info, process)

    def start_worker(self, model_name: str, key: str, copy: int = 0, tuning_log: str | None = None,
                     label: str = "") -> tuple[Worker, dict[str, Any]]:
        """A fresh worker process that has built `key` of the model, and what it said about the build. `copy` > 0
        is another process of the same variant; `tuning_log` overrides --tuning-log (a log folder the tuner has
        just made), `label` names such a one-off worker."""
        worker, request = self._launch(model_name, key, copy, tuning_log, label)
        return worker, self._request_build(worker, request)

    def _launch(self, model_name: str, key: str, copy: int = 0, tuning_log: str | None = None,
                label: str = "") -> tuple[Worker, BuildRequest]:
        """A worker process started (from the calling thread: the kernel ends a worker when the thread that started
        it ends, see worker_process.die_with_parent) and the request that builds `key` in it."""
        request = self.plan.request(model_name, key, tuning_log)
        spec = self.plan.worker_spec(model_name, key, copy, label)
        return Worker(spec.label, spec.reproduce, spec.log_path, env=spec.env, timeout=spec.timeout), request

    @staticmethod
    def _request_build(worker: Worker, request: BuildRequest) -> dict[str, Any]:
        try:
            return worker.request("build", request, doing="building")
        except WorkerError as exc:
            worker.close()
            if exc.kind == "unavailable":
                raise BackendUnavailable(str(exc)) from None
            if exc.kind == "usage":
                raise UsageError(str(exc)) from None
            raise UsageError(f"build failed: {exc} (worker output: {worker.log_path})") from None

    def timing_runner(self, model: str, key: str) -> Worker | ProcessRotation:
        """What times `key` (see `timing_runners`); raises why it cannot be timed."""
        self.build(model, key)  # raises why it did not build
        runners = self.timing_runners(model, [key])
        if key not in runners:
            raise self._pool_failures[(model, key)]
        return runners[key]

    def timing_runners(self, model: str, keys: list[str]) -> dict[str, Worker | ProcessRotation]:
        """What times each variant that built: its worker, or several worker processes taking its rounds in turn
        (plan.processes_for). The other processes are started once every variant's first is built (cold start and
        build time are the first's, measured alone), STARTING_AT_ONCE at a time, and must give the first's answer:
        a variant whose processes disagree is not timed, and its benchmark fails saying so (its first process's
        answer is still compared with the others')."""
        runners: dict[str, Worker | ProcessRotation] = {}
        wanted: dict[str, int] = {}
        for key in keys:
            try:
                built = self.build(model, key)
            except BUILD_FAILURES:
                continue  # its own test reports why
            if (model, key) in self._pool_failures:
                continue
            if (model, key) in self._rotations:
                runners[key] = self._rotations[(model, key)]
            elif (count := self.plan.processes_for(key, built.process["first_call_seconds"])) > 1:
                wanted[key] = count
            else:
                runners[key] = built.worker
                built.process["timing_processes"] = 1
        jobs = [(key, copy) for key, count in wanted.items() for copy in range(1, count)]
        launched = [self._launch(model, key, copy) for key, copy in jobs]  # started here, built below
        with ThreadPoolExecutor(max_workers=STARTING_AT_ONCE) as pool:
            started = dict(zip(jobs, pool.map(lambda job, worker: self._built_copy(model, *job, *worker), jobs,
                                              launched), strict=True))
        for key, count in wanted.items():
            built = self.build(model, key)
            workers, copies = [built.worker], [started[(key, copy)] for copy in range(1, count)]
            workers += [copy for copy in copies if isinstance(copy, Worker)]
            disagree = [copy for copy in copies if isinstance(copy, UsageError)]
            if disagree:
                close_all(workers[1:])
                self._pool_failures[(model, key)] = disagree[0]
                continue
            self._rotations[(model, key)] = runners[key] = ProcessRotation(workers)
            built.process["timing_processes"] = len(workers)
            built.process["timing_worker_pids"] = [w.pid for w in workers]
        return {key: runners[key] for key in keys if key in runners}

    def _built_copy(self, model: str, key: str, copy: int, worker: Worker,
                    request: BuildRequest) -> Worker | UsageError | None:
        """Another process of a built variant, built: the worker, a UsageError if its answer differs from the first
        process's, None if it failed to build (the variant is timed with the processes it has)."""
        try:
            built = self._request_build(worker, request)
        except BUILD_FAILURES:
            worker.close()
            return None
        first = self.build(model, key).logits
        scale = float(np.abs(first).max()) or 1.0
        if not np.allclose(built["logits"][0], first, rtol=0, atol=1e-4 * scale):
            worker.close()
            difference = float(np.abs(built["logits"][0] - first).max())
            return UsageError(f"worker process {copy + 1} of {key} gave other logits than the first "
                              f"(max abs difference {difference:.3g}); run it alone: "
                              f"`{self.plan.reproduce_command(model, key)}`")
        return worker

    def start_yardstick(self, model_name: str) -> dict[str, Worker]:
        """The workers timing this CPU's float32 peak and each library's GEMM beside the models, started once for
        the session, STARTING_AT_ONCE at a time (nothing is timed meanwhile); a kernel that cannot be built is left
        out (`yardstick_kernels` says why)."""
        if not self._kernels:
            launched = [self._launch(model_name, name) for name in KERNELS]  # from this thread: see _launch

            def build(worker: Worker, request: BuildRequest) -> tuple[Worker, dict[str, Any]] | BaseException:
                try:
                    return worker, self._request_build(worker, request)
                except BUILD_FAILURES as exc:
                    return exc

            with ThreadPoolExecutor(max_workers=STARTING_AT_ONCE) as pool:
                self._kernels.update(zip(KERNELS, pool.map(lambda job: build(*job), launched), strict=True))
        return {name: value[0] for name, value in self._kernels.items() if isinstance(value, tuple)}

    def yardstick_kernels(self) -> dict[str, dict[str, Any] | str]:
        """Per yardstick kernel: what it said when built (`kernel`, `flops_per_call`, `version`), or why it failed."""
        return {name: ({**value[1]["info"], "version": value[1]["version"]} if isinstance(value, tuple)
                       else str(value)) for name, value in self._kernels.items()}

    def close(self) -> None:
        workers = [value.worker for value in self._built.values() if isinstance(value, BuiltVariant)]
        workers += [value[0] for value in self._kernels.values() if isinstance(value, tuple)]
        workers += [worker for rotation in self._rotations.values() for worker in rotation.workers[1:]]
        close_all(workers)

