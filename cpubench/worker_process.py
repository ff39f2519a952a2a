"""The worker's side of the process boundary (worker.py is the pytest process's): one variant built, its rounds
timed with the backend's own `forward` between two clock reads, its answers on the evaluation set, and its memory;
each request answered over the pipe. Started as `python -m cpubench.worker_process FD PARENT_PID`."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .worker import BuildRequest

# Top-level modules of the runtimes the suite compares; a worker reports which of them it holds.
RUNTIME_MODULES = ("torch", "onnxruntime", "openvino", "tvm", "executorch", "ai_edge_litert", "tensorflow", "jax")

def memory_kib() -> dict[str, int]:
    """Resident memory now (VmRSS) and its peak since start or the last reset (VmHWM), in KiB."""
    values = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        import resource

        values = {"VmHWM": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    return {"rss_kib": values.get("VmRSS", 0), "peak_kib": values.get("VmHWM", 0)}


def reset_peak_memory() -> bool:
    """Start a new peak (Linux: writing 5 to clear_refs resets VmHWM), so inference's peak is told from build's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# Fault injection, for proving the regression gate (docs/gate_power.json): `CPUBENCH_SLOWDOWN="onnxruntime=1.5"`
# (or `resnet18-openvino=2`, comma-separated) makes that variant's timed calls do k times the work: one forward
# pass each, plus another on every (k - 1)-th call on average. Never set by the suite; the report says when it is.
SLOWDOWN_VARIABLE = "CPUBENCH_SLOWDOWN"


def injected_slowdown(model: str, variant: str, text: str | None = None) -> float:
    """The work factor CPUBENCH_SLOWDOWN asks of this variant: 1.0 when it names neither `variant` nor
    `<model>-<variant>`. A malformed entry is a UsageError naming the variable."""
    from .errors import UsageError

    text = os.environ.get(SLOWDOWN_VARIABLE, "") if text is None else text
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, sep, factor = entry.rpartition("=")
        try:
            value = float(factor)
        except ValueError:
            value = 0.0
        if not sep or not name or value < 1.0:
            raise UsageError(f"{SLOWDOWN_VARIABLE}: expected VARIANT=FACTOR with FACTOR >= 1 (e.g. onnxruntime=1.5), "
                             f"got {entry!r}")
        if name in (variant, f"{model}-{variant}"):
            return value
    return 1.0


class _Variant:
    """The worker's one variant: its backend, built, with its inputs ready."""

    def __init__(self) -> None:
        self.backend: Any = None
        self.inputs: Any = None
        self.inputs_batch = 1
        self.slowdown = 1.0  # CPUBENCH_SLOWDOWN's work factor
        self._owed = 0.0  # forward passes the slowdown still owes

    def build(self, request: BuildRequest) -> dict[str, Any]:
        for name in request.block_modules:
            sys.modules[name] = None  # type: ignore[assignment]  # `import torch` now raises ImportError
        for entry in request.sys_path:
            if entry not in sys.path:
                sys.path.append(entry)
        started = time.perf_counter()
        from .backends import LoadContext, check_precision

        backend = importlib.import_module(request.module).create(request.backend)
        check_precision(backend, request.precision)
        imported = time.perf_counter()
        factory = None
        if request.model_recipe is not None:
            def factory() -> Any:
                from .models import build_model

                spec, weights, batch_size, input_size = request.model_recipe
                return build_model(spec, weights, batch_size, input_size).module
        ctx = LoadContext(model=request.model, onnx_path=request.onnx_path, threads=request.threads,
                          tuning_logs=request.tuning_logs, tuning_log_exact=request.tuning_log_exact,
                          tuning_log_name=request.tuning_log_name, precision=request.precision,
                          module_factory=factory, calibration=request.calibration)
        ctx.info["precision"] = request.precision
        self.slowdown = injected_slowdown(getattr(request.model, "name", ""), request.variant)
        if self.slowdown != 1.0:
            ctx.info["injected_slowdown"] = self.slowdown
        backend.load(ctx)
        inputs = backend.prepare_inputs(request.batch)
        loaded = time.perf_counter()
        outputs = backend.forward(inputs)  # the first answer; first-call allocations stay out of every round
        answered = time.perf_counter()
        logits = backend.to_numpy(outputs)
        self.backend, self.inputs, self.inputs_batch = backend, inputs, int(request.batch.shape[0])
        artifact = ctx.info.pop("artifact_path", None)
        memory = memory_kib()
        return {
            "logits": logits, "info": ctx.info, "version": backend.version(), "backend_name": backend.name,
            "import_seconds": imported - started, "load_seconds": loaded - imported,
            "first_call_seconds": answered - loaded,
            "artifact": str(artifact) if artifact else None,
            "artifact_bytes": Path(artifact).stat().st_size if artifact and Path(artifact).is_file() else None,
            "rss_after_build_kib": memory["rss_kib"], "peak_build_kib": memory["peak_kib"],
            "peak_reset": reset_peak_memory(),
            "runtimes_in_process": sorted(m for m in RUNTIME_MODULES if sys.modules.get(m) is not None),
        }

    def round(self, seconds: float, warmup_seconds: float) -> list[float]:
        """One round: untimed calls for `warmup_seconds` (at least one if asked), so the thread pool is awake and
        the caches are this variant's; then timed calls until `seconds` have passed (at least one)."""
        forward, inputs, clock = self.backend.forward, self.inputs, time.perf_counter
        if warmup_seconds > 0:
            until = clock() + warmup_seconds
            forward(inputs)
            while clock() < until:
                forward(inputs)
        times: list[float] = []
        extra = self.slowdown - 1.0
        start = clock()
        while True:
            t0 = clock()
            forward(inputs)
            if extra:
                self._owed += extra
                while self._owed >= 1.0:
                    forward(inputs)
                    self._owed -= 1.0
            t1 = clock()
            times.append(t1 - t0)
            if t1 - start >= seconds:
                return times

    def evaluate(self, images: Any) -> Any:
        """Logits (N, classes) for each of `images` (N, C, H, W), one call each, the image repeated to the batch
        size the variant was built for; never timed. What int8's agreement rate is measured on."""
        import numpy as np

        from .images import make_batch

        batch = self.inputs_batch
        rows = []
        for image in images:
            inputs = self.backend.prepare_inputs(make_batch(image, batch))
            rows.append(self.backend.to_numpy(self.backend.forward(inputs))[0])
        return np.stack(rows)

    @staticmethod
    def timer_overhead(calls: int = 2000) -> float:
        """Seconds the timing loop adds to one sample: the same loop around a call that does nothing."""
        clock, samples = time.perf_counter, []
        for _ in range(calls):
            t0 = clock()
            (lambda x: x)(None)
            samples.append(clock() - t0)
        samples.sort()
        return samples[len(samples) // 2]


def serve(conn: Connection) -> None:
    variant = _Variant()
    handlers = {
        "build": variant.build,
        "round": variant.round,
        "evaluate": variant.evaluate,
        "ping": lambda: time.perf_counter(),
        "memory": memory_kib,
        "timer_overhead": variant.timer_overhead,
        "slowdown": lambda factor: setattr(variant, "slowdown", float(factor)),  # gate_power's fault injection
    }
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        kind, args = message[0], message[1:]
        if kind == "stop":  # nothing to save: end now rather than wait for the runtimes' teardown (seconds each)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        try:
            reply = ("ok", handlers[kind](*args))
        except Exception as exc:  # reported to the pytest process, which decides how the variant's tests end
            from .backends import BackendUnavailable
            from .errors import UsageError

            status = "unavailable" if isinstance(exc, BackendUnavailable) else \
                "usage" if isinstance(exc, UsageError) else "error"
            text = str(exc) if status != "error" else f"{type(exc).__name__}: {exc}"
            if status == "error":
                traceback.print_exc()
                sys.stdout.flush()
            reply = (status, text)
        conn.send(reply)


def die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this worker when the pytest process ends, however it ends. A worker stopped between
    rounds (Worker.pause) would otherwise never read the end of its pipe and stay behind."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the line above
        os._exit(1)


if __name__ == "__main__":
    die_with_parent(int(sys.argv[2]))
    serve(Connection(int(sys.argv[1])))
