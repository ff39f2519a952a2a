"""Per-session state: each (model, variant) is built once in its own worker process, its answer on the photo kept,
and the variants of every model of the run timed together in interleaved rounds once; every benchmark's numbers
collected for the report. The pytest process builds the torch model and its ONNX export, and never times anything
itself."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .backends import BACKENDS, TORCH_FREE, BackendUnavailable, backend_module
from .cache import relative_artifact_path
from .errors import UsageError, remembered
from .images import DEFAULT_IMAGE, load_image, make_batch
from .int8_session import Int8Session
from .models import BuiltModel, build_model, parse_spec
from .options import Settings, physical_cores
from .precision import Variant, cpu_lacks
from .results import REFERENCE_BACKEND, BenchRow
from .schedule import LONG_CALL_SECONDS, ProcessRotation, Schedule, VariantRounds, boundary_cost, interleave
from .worker import BuildRequest, Worker, WorkerDied, WorkerError, close_all
from .yardstick import GEMMS, KERNELS, PEAK, TORCH_FREE_KERNELS

# Worker processes timing the yardstick (ONNX Runtime, 0.4 s to start): every ratio is divided by its median, and one
# process's median can sit several percent from another's (measured: 58.9% against 62.5-63.1% of the GEMM rate).
YARDSTICK_PROCESSES = 3
STARTING_AT_ONCE = 2  # extra processes built at once (never while anything is timed)


@dataclass
class LoadedBackend:
    """A variant built in its worker: its answer on the photo, and what building it cost."""

    model: str
    name: str  # the variant's key
    backend_name: str
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


class SuiteSession:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.image_path = Path(settings.image or DEFAULT_IMAGE)
        self.image = load_image(self.image_path)  # checked at start-up; each model gets its own size below
        self._images: dict[tuple, np.ndarray] = {}
        self._models: dict[str, BuiltModel] = {}
        self._onnx: dict[str, Path] = {}
        self.export_seconds: dict[str, float] = {}
        self._loaded: dict[tuple[str, str], LoadedBackend | BaseException] = {}
        self._schedules: dict[str, Schedule] = {}
        self._kernels: dict[str, tuple[Worker, dict[str, Any]] | BaseException] = {}  # the yardstick's workers
        self._flops: dict[str, Any] = {}  # model -> flops.FlopCount or None
        self._rotations: dict[tuple[str, str], ProcessRotation] = {}  # pooled processes, per (model, variant)
        self._pool_failures: dict[tuple[str, str], UsageError] = {}  # variants whose processes disagreed
        self.int8 = Int8Session(self)  # quantized models and answers on the evaluation set
        self.boundary: dict[str, dict[str, float]] = {}  # model -> what the process boundary costs (see measure)
        self.timed_with: dict[str, list[str]] = {}  # model -> the other models whose variants shared its rotations
        self.results: list[BenchRow] = []
        self.verdicts: list[str] = []  # what each verdict checked and against what, for the report

    @property
    def default_image(self) -> bool:
        return self.settings.image is None

    def model(self, name: str) -> BuiltModel:
        if name not in self._models:
            self._models[name] = build_model(name, self._weights_for(name), self.settings.batch_size,
                                             self.settings.input_size)
        return self._models[name]

    def _weights_for(self, name: str) -> Path | None:
        # --weights goes into every torch-defined model, except that efficientnet_lite0 keeps the ImageNet
        # weights it ships with when other models run beside it (`--weights resnet18.pth` on the default run).
        keeps_own = name == "efficientnet_lite0" and len(self.settings.models) > 1
        return None if keeps_own else self.settings.weights

    def image_for(self, name: str) -> np.ndarray:
        """The photo as this model wants it: its input size and normalisation, one image (batch 1)."""
        model = self.model(name)
        key = (model.input_shape[1:], model.mean, model.std)
        if key not in self._images:
            self._images[key] = load_image(self.image_path, model.input_shape[2:], model.mean, model.std,
                                           channels=model.input_shape[1])
        return self._images[key]

    def onnx_path(self, name: str) -> Path:
        if name not in self._onnx:
            from .onnx_export import export_onnx

            started = time.perf_counter()
            self._onnx[name] = export_onnx(self.model(name))
            self.export_seconds[name] = time.perf_counter() - started
        return self._onnx[name]

    def loaded(self, model: str, backend: str) -> LoadedBackend:
        """Build once; a failure is remembered and raised again rather than retried for every test."""
        return remembered(self._loaded, (model, backend), lambda: self._load(model, backend),
                          (UsageError, BackendUnavailable, WorkerDied))

    def build_outcome(self, model: str, backend: str) -> tuple[str, str]:
        """("built", "") / ("unavailable", why) / ("failed", why) / ("not built", "") for a verdict's message."""
        value = self._loaded.get((model, backend))
        if value is None:
            return "not built", ""
        if isinstance(value, BackendUnavailable):
            return "unavailable", str(value)
        if isinstance(value, BaseException):
            return "failed", str(value)
        died = self.timing_failure(model, backend)
        if died is not None:
            return "failed", str(died)
        return "built", ""

    def reproduce_command(self, model: str, variant: Variant) -> str:
        settings = self.settings
        parts = ["pytest benches/", f"--models {model}", f"--backends {variant.backend}",
                 f"--precision {variant.precision}"]
        if settings.threads != physical_cores():
            parts.append(f"--threads {settings.threads}")
        if settings.batch_size != 1:
            parts.append(f"--batch-size {settings.batch_size}")
        return " ".join(parts)

    def _load(self, model_name: str, variant_key: str) -> LoadedBackend:
        variant = Variant.parse(variant_key)
        if variant.backend not in BACKENDS:
            raise UsageError(f"--backends: unknown backend {variant.backend!r}")
        lacking = cpu_lacks(variant.precision)
        if lacking:
            raise BackendUnavailable(lacking)
        worker, built = self.start_worker(model_name, variant_key, variant, backend_module(variant.backend))
        cold_start = time.perf_counter() - worker.started_at
        logits = built["logits"]
        if logits.ndim != 2 or logits.shape[0] != self.settings.batch_size:
            worker.close()
            raise UsageError(f"{variant_key} returned output of shape {logits.shape} for {model_name}, "
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
            info.update(self.int8.quantized(model_name).info)
        return LoadedBackend(model_name, variant_key, built["backend_name"], built["version"], worker, logits[0],
                             built["load_seconds"], info, process)

    def start_worker(self, model_name: str, variant_key: str, variant: Variant,
                     module: str, copy: int = 0, tuning_log: str | None = None,
                     label: str = "") -> tuple[Worker, dict[str, Any]]:
        """A fresh worker process that has built `variant` of the model, and what it said about the build. `copy` >
        0 is another process of the same variant (see `timing_runners`); `tuning_log` overrides
        --tuning-log (a log folder the tuner has just made), `label` names such a one-off worker."""
        worker, request = self._launch(model_name, variant_key, variant, module, copy, tuning_log, label)
        return worker, self._build(worker, request)

    def _launch(self, model_name: str, variant_key: str, variant: Variant, module: str, copy: int = 0,
                tuning_log: str | None = None, label: str = "") -> tuple[Worker, BuildRequest]:
        """A worker process started (from the calling thread: the kernel ends a worker when the thread that started
        it ends, see worker.die_with_parent) and the request that builds `variant` in it."""
        model = self.model(model_name)
        spec = parse_spec(model_name)
        int8 = variant.precision == "int8"
        # int8: the ONNX-based runtimes load the quantized QDQ file; the others quantize with the calibration set.
        qdq = int8 and variant.backend in TORCH_FREE
        request = BuildRequest(
            variant=variant_key, backend=variant.backend, precision=variant.precision,
            module=module, model=replace(model, module=None),  # a torch module does not cross processes
            model_recipe=None if model.module is None else
            (model_name, self._weights_for(model_name), self.settings.batch_size, self.settings.input_size),
            onnx_path=self.int8.quantized(model_name).path if qdq else self.onnx_path(model_name),
            threads=self.settings.threads,
            tuning_logs=self.settings.tuning_logs, tuning_log_exact=self.settings.tuning_log_exact,
            tuning_log_name=tuning_log or self.settings.tuning_log,
            batch=make_batch(self.image_for(model_name), self.settings.batch_size),
            block_modules=("torch",) if variant.backend in TORCH_FREE or variant.backend in TORCH_FREE_KERNELS else (),
            calibration=self.int8.calibration(model_name) if int8 and not qdq else None)
        threads = str(self.settings.threads)
        suffix = f"-p{copy + 1}" if copy else (f"-{label}" if label else "")
        worker = Worker(f"{spec.test_id}-{variant_key}{suffix}", self.reproduce_command(model_name, variant),
                        self.settings.results_dir / "workers" / f"{model.disk_key}-{variant_key}{suffix}.log",
                        env={"OMP_NUM_THREADS": threads, "TVM_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"},
                        timeout=self.settings.worker_timeout)
        return worker, request

    @staticmethod
    def _build(worker: Worker, request: BuildRequest) -> dict[str, Any]:
        try:
            return worker.request("build", request, doing="building")
        except WorkerError as exc:
            worker.close()
            if exc.kind == "unavailable":
                raise BackendUnavailable(str(exc)) from None
            if exc.kind == "usage":
                raise UsageError(str(exc)) from None
            raise UsageError(f"build failed: {exc} (worker output: {worker.log_path})") from None

    def timing_runner(self, model: str, variant: str) -> Worker | ProcessRotation:
        """What times `variant` (see `timing_runners`); raises why it cannot be timed."""
        self.loaded(model, variant)  # raises why it did not build
        runners = self.timing_runners(model, [variant])
        if variant not in runners:
            raise self._pool_failures[(model, variant)]
        return runners[variant]

    def processes_for(self, model: str, variant: str) -> int:
        """How many worker processes take `variant`'s rounds in turn: --processes; the yardstick, which every ratio
        divides by, at least YARDSTICK_PROCESSES; one for a variant whose call outlasts a few rounds."""
        if variant == REFERENCE_BACKEND:
            return max(YARDSTICK_PROCESSES, self.settings.processes)
        if self.loaded(model, variant).process["first_call_seconds"] > LONG_CALL_SECONDS:
            return 1
        return self.settings.processes

    def timing_runners(self, model: str, variants: list[str]) -> dict[str, Worker | ProcessRotation]:
        """What times each variant that built: its worker, or several worker processes taking its rounds in turn
        (`processes_for`). A process's speed differs by a few percent from the next one's (memory placement,
        thread placement), which interleaving within one process cannot cancel; pooling processes does (pyperf
        spreads its runs over processes for the same reason). The other processes are started once every variant's
        first is built (cold start and build time are the first's, measured alone), STARTING_AT_ONCE at a time, and
        must give the first's answer: a variant whose processes disagree is not timed, and its benchmark fails saying so
        (its first process's answer is still compared with the others')."""
        runners: dict[str, Worker | ProcessRotation] = {}
        wanted: dict[str, int] = {}
        for variant in variants:
            try:
                loaded = self.loaded(model, variant)
            except (UsageError, BackendUnavailable, WorkerDied):
                continue  # its own test reports why
            if (model, variant) in self._pool_failures:
                continue
            if (model, variant) in self._rotations:
                runners[variant] = self._rotations[(model, variant)]
            elif (count := self.processes_for(model, variant)) > 1:
                wanted[variant] = count
            else:
                runners[variant] = loaded.worker
                loaded.process["timing_processes"] = 1
        jobs = [(variant, copy) for variant, count in wanted.items() for copy in range(1, count)]
        launched = [self._launch(model, variant, Variant.parse(variant), backend_module(Variant.parse(variant).backend),
                                 copy) for variant, copy in jobs]  # started here, built below
        with ThreadPoolExecutor(max_workers=STARTING_AT_ONCE) as pool:
            started = dict(zip(jobs, pool.map(lambda job, worker: self._built_copy(model, *job, *worker), jobs,
                                              launched), strict=True))
        for variant, count in wanted.items():
            loaded = self.loaded(model, variant)
            workers, copies = [loaded.worker], [started[(variant, copy)] for copy in range(1, count)]
            workers += [copy for copy in copies if isinstance(copy, Worker)]
            disagree = [copy for copy in copies if isinstance(copy, UsageError)]
            if disagree:
                close_all(workers[1:])
                self._pool_failures[(model, variant)] = disagree[0]
                continue
            self._rotations[(model, variant)] = runners[variant] = ProcessRotation(workers)
            loaded.process["timing_processes"] = len(workers)
            loaded.process["timing_worker_pids"] = [w.pid for w in workers]
        return {variant: runners[variant] for variant in variants if variant in runners}

    def _built_copy(self, model: str, variant_key: str, copy: int, worker: Worker,
                    request: BuildRequest) -> Worker | UsageError | None:
        """Another process of a built variant, built: the worker, a UsageError if its answer differs from the first
        process's, None if it failed to build (the variant is timed with the processes it has)."""
        variant = Variant.parse(variant_key)
        try:
            built = self._build(worker, request)
        except (UsageError, BackendUnavailable, WorkerDied):
            worker.close()
            return None
        first = self.loaded(model, variant_key).logits
        scale = float(np.abs(first).max()) or 1.0
        if not np.allclose(built["logits"][0], first, rtol=0, atol=1e-4 * scale):
            worker.close()
            difference = float(np.abs(built["logits"][0] - first).max())
            return UsageError(f"worker process {copy + 1} of {variant_key} gave other logits than the first "
                              f"(max abs difference {difference:.3g}); run it alone: "
                              f"`{self.reproduce_command(model, variant)}`")
        return worker

    def yardstick_workers(self, model_name: str) -> dict[str, Worker]:
        """The workers timing this CPU's float32 peak and each library's GEMM beside the models (once for the
        session); a kernel that cannot be built is left out (`yardstick_kernels` says why)."""
        if not self._kernels:
            for name in KERNELS:
                try:
                    self._kernels[name] = self.start_worker(model_name, name, Variant(name), "cpubench.yardstick")
                except (UsageError, BackendUnavailable, WorkerDied) as exc:
                    self._kernels[name] = exc
        return {name: value[0] for name, value in self._kernels.items() if isinstance(value, tuple)}

    def yardstick_kernels(self) -> dict[str, dict[str, Any] | str]:
        """Per yardstick kernel: what it said when built (`kernel`, `flops_per_call`, `version`), or why it failed."""
        return {name: ({**value[1]["info"], "version": value[1]["version"]} if isinstance(value, tuple)
                       else str(value)) for name, value in self._kernels.items()}

    def flop_count(self, model_name: str) -> Any:
        """The model's FLOPs (flops.FlopCount), counted from its ONNX graph (every model has one: an exported torch
        model or an `onnx:` file); None when the graph cannot be counted."""
        if model_name not in self._flops:
            from .flops import onnx_flops

            self._flops[model_name] = onnx_flops(self.onnx_path(model_name))
        return self._flops[model_name]

    def flops(self, model_name: str) -> int | None:
        """FLOPs of one forward pass of the whole batch (2 per multiply-add), None when they cannot be counted."""
        count = self.flop_count(model_name)
        return count.total if count is not None and count.total else None

    def winograd_allowance(self, model_name: str) -> float:
        """How much faster than its direct FLOPs allow a Winograd build of this model may plausibly run."""
        from .flops import winograd_allowance

        count = self.flop_count(model_name)
        return winograd_allowance(count) if count is not None and count.total else 1.0

    def measure(self, model: str, variants: list[str], seconds_per_variant: float, min_rounds: int,
                together: dict[str, list[str]] | None = None) -> Schedule:
        """Time every variant of `model` that built, once per session (the first benchmark asks), in the same
        rotations as the variants of every model in `together` (the run's other models): each model's rounds then
        spread over the whole timing span of the run, not over its own share of it, so a change of the machine that
        lasts a minute weighs less on any model's ratios. Ratios still pair rounds of one rotation."""
        if model not in self._schedules:
            plan = {name: list(planned) for name, planned in (together or {}).items() if name not in self._schedules}
            plan[model] = list(variants)
            self._measure_together(plan, seconds_per_variant, min_rounds)
        return self._schedules[model]

    def _measure_together(self, plan: dict[str, list[str]], seconds_per_variant: float, min_rounds: int) -> None:
        workers: dict[tuple[str, str], Worker | ProcessRotation] = {
            (model, variant): runner for model, variants in plan.items()
            for variant, runner in self.timing_runners(model, variants).items()}
        if workers:
            workers.update({("", name): worker for name, worker in self.yardstick_workers(next(iter(plan))).items()})
        boundary = boundary_cost(workers, (WorkerDied, WorkerError))
        timed_models = list(dict.fromkeys(model for model, _ in workers if model))
        always = tuple((model, REFERENCE_BACKEND) for model in plan) + (("", PEAK),)
        joint = interleave(workers, seconds_per_variant=seconds_per_variant, min_rounds=min_rounds,
                           round_seconds=self.settings.round_ms / 1e3, always=always,
                           sparse=tuple(("", name) for name in GEMMS))
        for model, variants in plan.items():
            rounds = {key[1]: value for key, value in joint.rounds.items() if key[0] in (model, "")}
            for (name, variant), failure in self._pool_failures.items():
                if name == model and variant in variants:
                    rounds[variant] = VariantRounds(failure=failure)
            order = [[key[1] for key in keys if key[0] in (model, "")] for keys in joint.order]
            self._schedules[model] = replace(joint, rounds=rounds, order=order)
            self.boundary[model] = boundary
            self.timed_with[model] = [other for other in timed_models if other != model]
        for (model, variant), worker in workers.items():
            if model and joint.rounds[(model, variant)].failure is None:
                loaded = self.loaded(model, variant)
                try:
                    memory = worker.request("memory", doing="reading its memory use")
                except (WorkerDied, WorkerError):
                    continue
                if loaded.process.get("peak_reset"):
                    loaded.process["peak_inference_mib"] = memory["peak_kib"] / 1024

    def yardstick_rounds(self, model: str) -> dict[str, dict[int, float]]:
        """Each yardstick kernel's rounds in `model`'s timing: per rotation, seconds per call."""
        schedule = self._schedules.get(model)
        if schedule is None:
            return {}
        return {name: rounds.round_means for name, rounds in schedule.rounds.items()
                if name in KERNELS and rounds.failure is None and rounds.calls}

    def timing_failure(self, model: str, variant: str) -> BaseException | None:
        schedule = self._schedules.get(model)
        rounds = schedule.rounds.get(variant) if schedule else None
        return rounds.failure if rounds else None

    def retime(self, model: str, variants: list[str], seconds_per_variant: float = 1.0,
               min_rounds: int = 10) -> Schedule:
        """Time some built variants again, interleaved, with the peak kernel in every rotation (the gate's
        sequential test: more rotations where one run's interval could not decide)."""
        workers: dict[str, Any] = {v: self.timing_runner(model, v) for v in variants if v not in KERNELS}
        peak = self.yardstick_workers(model).get(PEAK)
        if peak is not None:
            workers[PEAK] = peak
        return interleave(workers, seconds_per_variant=seconds_per_variant, min_rounds=min_rounds,
                          round_seconds=self.settings.round_ms / 1e3, always=(variants[0], PEAK))

    def judge(self, model: str, data: dict[str, Any]) -> tuple[Any, str]:
        """The regression gate on `model` (gate.judge)."""
        from .gate import judge

        return judge(self, model, data)

    def replace_schedule(self, model: str, schedule: Schedule) -> None:
        """Make `schedule` the model's measurement (gate_power: each of its quick runs replaces the last)."""
        self._schedules[model] = schedule

    def close(self) -> None:
        workers = [value.worker for value in self._loaded.values() if isinstance(value, LoadedBackend)]
        workers += [value[0] for value in self._kernels.values() if isinstance(value, tuple)]
        workers += [worker for rotation in self._rotations.values() for worker in rotation.workers[1:]]
        close_all(workers)

