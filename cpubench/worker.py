"""The process boundary: each variant is built and timed in a worker process of its own, started fresh (never
forked) with no other runtime imported. This module alone knows processes exist: it starts a worker, sends it a
request, waits with a timeout, and turns a worker's death (a signal, an exit, a hang) into one line that names the
variant, the signal and the command that reproduces it alone.

Both sides live here: `Worker` in the pytest process, `serve` in the worker (`python -m cpubench.worker FD`). The
worker runs the backends' own interface (load / prepare_inputs / forward / to_numpy) unchanged and times
`forward` itself, so the pipe between the two is never inside a sample.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 900.0  # seconds a worker may take to answer one request (a cold tuned-TVM build is ~2 min)
# Top-level modules of the runtimes the suite compares; a worker reports which of them it holds.
RUNTIME_MODULES = ("torch", "onnxruntime", "openvino", "tvm", "executorch", "ai_edge_litert", "tensorflow", "jax")


@dataclass(frozen=True)
class BuildRequest:
    """Everything a worker needs to build one variant; pickled across the boundary."""

    variant: str  # the variant's key, e.g. `openvino-bf16`
    backend: str
    precision: str
    module: str  # dotted module defining the backend's `create(name)`
    model: Any  # models.BuiltModel without its torch module (None): a module does not cross processes
    model_recipe: tuple | None  # (spec, weights, batch_size, input_size) to rebuild the torch module in the worker
    onnx_path: Path
    threads: int
    tuning_logs: Path
    tuning_log_exact: bool
    tuning_log_name: str | None
    batch: Any  # np.ndarray: the photo as the model wants it, batched
    block_modules: tuple[str, ...] = ()  # imports this worker refuses (torch, for ONNX-based runtimes)
    calibration: Any = None  # np.ndarray (N, C, H, W): int8 calibration images, for a backend that quantizes itself
    sys_path: tuple[str, ...] = field(default_factory=lambda: tuple(sys.path))


class WorkerDied(Exception):
    """The worker ended (signal, exit) or hung past its timeout; the message is the one line to show."""

    def __init__(self, message: str, signal_name: str | None = None) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class WorkerError(Exception):
    """The request failed inside a live worker: `kind` is `unavailable`, `usage` or `error`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def describe_exit(returncode: int) -> tuple[str, str]:
    """(`SIGSEGV (signal 11)`, `SIGSEGV`) for a death by signal; (`exit status 3`, ``) otherwise."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"{name} (signal {-returncode})", name
    return f"exit status {returncode}", ""


class Worker:
    """One variant's worker process, seen from the pytest process."""

    def __init__(self, label: str, reproduce: str, log_path: Path, env: dict[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.label = label  # `resnet18-openvino-bf16`
        self.reproduce = reproduce  # the command that runs this variant alone
        self.log_path = log_path
        self.timeout = timeout
        self.dead: WorkerDied | None = None
        self.started_at = 0.0
        self._paused = False  # stopped by `pause` until the next request
        log_path.parent.mkdir(parents=True, exist_ok=True)
        parent, child = Pipe(duplex=True)
        self._conn: Connection = parent
        worker_env = {**os.environ, **(env or {})}
        with open(log_path, "wb") as log:
            self.started_at = time.perf_counter()
            self._proc = subprocess.Popen([sys.executable, "-m", "cpubench.worker", str(child.fileno()),
                                           str(os.getpid())],
                                          pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=worker_env, close_fds=True)
        child.close()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def request(self, kind: str, *args: Any, timeout: float | None = None, doing: str = "") -> Any:
        """Send one request and return its answer; WorkerError for a failure it reported, WorkerDied if it ended."""
        if self.dead is not None:
            raise self.dead
        self._resume()
        doing = doing or kind
        wait = self.timeout if timeout is None else timeout
        try:
            self._conn.send((kind, *args))
            if not self._conn.poll(wait) and self._proc.poll() is None:
                self._kill()
                self._fail(f"hung: no answer within {wait:.0f} s while {doing}, killed", "timeout")
            status, payload = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._died(doing)
        if status == "ok":
            return payload
        raise WorkerError(status, payload)

    def pause(self, limit: float = 0.25) -> float:
        """Stop the worker's threads now (SIGSTOP), until its next request: a thread pool spins for a while after
        work (TVM's for about 40 ms, ONNX Runtime's for about 15, OpenMP's for longer), and must not run beside the
        next variant's round. Stopping it costs well under a millisecond where waiting for the spin to end cost 40 ms
        a round; a frozen spin resumes with the worker's next request, whose round starts with untimed calls anyway.
        Returns the seconds it took every thread to stop (gives up waiting after `limit`)."""
        started = time.perf_counter()
        if self.dead is not None or self._proc.poll() is not None:
            return 0.0
        try:
            os.kill(self.pid, signal.SIGSTOP)
        except OSError:
            return 0.0
        self._paused = True
        while time.perf_counter() - started < limit and not all_threads_stopped(self.pid):
            time.sleep(0.0001)
        return time.perf_counter() - started

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGCONT)

    def _died(self, doing: str) -> None:
        try:
            returncode = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._kill()
            returncode = self._proc.returncode
        how, name = describe_exit(returncode)
        self._fail(f"died from {how} while {doing}", name or None)

    def _fail(self, what: str, signal_name: str | None) -> None:
        self.dead = WorkerDied(f"{self.label}: worker process {self.pid} {what}; run it alone: `{self.reproduce}` "
                               f"(worker output: {self.log_path})", signal_name)
        raise self.dead

    def _kill(self) -> None:
        with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
            self._proc.kill()
        with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
            self._proc.wait(timeout=10)

    def close(self) -> None:
        close_all([self])

    def _ask_to_stop(self) -> None:
        self._resume()
        if self._proc.poll() is None and self.dead is None:
            with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
                self._conn.send(("stop",))

    def _wait_stopped(self, deadline: float) -> None:
        try:
            self._proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._kill()
        with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
            self._conn.close()


def close_all(workers: list[Worker], grace: float = 5.0) -> None:
    """End workers together: each is asked to stop, then all are waited for (`grace` seconds in all, then killed),
    so a session's twenty workers take as long to end as the slowest, not their sum."""
    for worker in workers:
        worker._ask_to_stop()
    deadline = time.monotonic() + grace
    for worker in workers:
        worker._wait_stopped(deadline)


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of `pid` is stopped (or gone), from /proc/PID/task/*/stat; True where unreadable."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for task in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2:][:1] not in "TtZX":
            return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# The worker's side.

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
