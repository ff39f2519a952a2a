"""The process boundary: each variant is built and timed in a worker process of its own, started fresh (never
forked) with no other runtime imported. `Worker` starts one (the launcher decides which), sends it a request, waits
with a timeout, and turns a worker's death (a signal, an exit, a hang) into one line that names the variant, the
signal and the command that reproduces it alone.

This module is the pytest process's side (`Worker`); worker_process.py is the worker's (`python -m
cpubench.worker_process FD PID`). The worker runs the backends' own interface (load / prepare_inputs / forward /
to_numpy) unchanged and times `forward` itself, so the pipe between the two is never inside a sample.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 900.0  # seconds a worker may take to answer one request (a cold tuned-TVM build is ~2 min)


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
            self._proc = subprocess.Popen([sys.executable, "-m", "cpubench.worker_process", str(child.fileno()),
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
