"""MetaSchedule's builder, runner and measure callback as the tuner uses them: a lean build function, progress
reported each round, a local or RPC runner, and how candidates are timed during the search and at the end."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import UsageError
from .progress import ProgressReporter

# A candidate whose code takes longer than this to compile (huge explicit unrolls) is dropped: on a 2-core
# machine one such build stalls half the builder pool, and these candidates are not the fast ones.
BUILD_TIMEOUT_S = 15.0
SEARCH_EVALUATOR = dict(number=1, repeat=3, min_repeat_ms=20, enable_cpu_cache_flush=False)
# Final clean measurement of the finalists (see remeasure.py).
CLEAN_EVALUATOR = dict(number=1, repeat=7, min_repeat_ms=100, enable_cpu_cache_flush=False)


def build_candidate(mod: Any, target: Any, _params: Any) -> Any:
    """MetaSchedule's default build without `import tvm.s_tir.tensor_intrin`.

    The default build function imports every tensor intrinsic TVM knows (23 s of CPU here) in each builder
    process: on 2 cores that import, not compiling, was most of the tuning time. Float32 CPU schedules use no
    tensor intrinsic, so it is not needed.
    """
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


# A builder process is recycled after this many builds. MetaSchedule's LocalBuilder starts new processes for every
# call, because its workers' memory grows over many builds; a bounded number of uses keeps that in check.
BUILDS_PER_PROCESS = 256


def build_and_export(mod: Any, target: Any) -> str:
    """One candidate, in a builder process: compiled with the lean build function, exported for the runner."""
    from tvm.s_tir.meta_schedule.builder.local_builder import default_export

    return default_export(build_candidate(mod, target, None))


def _ready() -> None:
    """A builder process's first job: import what building needs, before the first candidate waits on it."""
    import tvm.driver  # noqa: F401
    import tvm.s_tir.transform  # noqa: F401


class BuildPool:
    """Builder processes kept for a whole tuning run (search, seeds and finalists).

    MetaSchedule's LocalBuilder starts new worker processes for every call, and one more to check its build
    function when made: each imports TVM (3-4 s on 2 cores). A tiny model's tuning made 13 such starts in 70 s;
    in a real search each round of candidates waited for one. Here each process is started once, in the
    background when the pool is made, and recycled after BUILDS_PER_PROCESS builds; a build that times out ends
    its process, which is started again for the next one. Built only from TVM's public PopenWorker.
    """

    def __init__(self, processes: int | None = None) -> None:
        import queue

        from tvm.s_tir.meta_schedule.utils import cpu_count
        from tvm.support.popen_pool import PopenWorker

        count = processes or cpu_count(logical=True)
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(count):
            self._idle.put(PopenWorker(maximum_uses=BUILDS_PER_PROCESS))
        self._threads = ThreadPoolExecutor(max_workers=count, thread_name_prefix="tvm-build")
        # Started now, so the imports overlap the caller's own work; every build call waits for them first, so no
        # process is still starting while candidates are timed after it.
        self._starting = [self._threads.submit(self.call, _ready) for _ in range(count)]

    def call(self, fn: Any, args: tuple[Any, ...] = (), timeout_s: float | None = None) -> Any:
        """`fn(*args)` in one of the pool's processes (blocking; from several threads, in several processes)."""
        worker = self._idle.get()
        try:
            worker.send(fn, args, timeout=timeout_s)
            return worker.recv()
        finally:
            self._idle.put(worker)

    def ready(self) -> None:
        """Wait until every process has started (one that failed to start is started again by its next job)."""
        for starting in self._starting:
            starting.exception()

    def build(self, inputs: list[Any], timeout_s: float) -> list[Any]:
        """MetaSchedule BuilderInputs built in the pool's processes: BuilderResults in the same order, a failure
        or a timeout as the result's error message (LocalBuilder's wording)."""
        from tvm.s_tir import meta_schedule as ms

        self.ready()
        futures = [self._threads.submit(self.call, build_and_export, (i.mod, i.target), timeout_s) for i in inputs]
        results = []
        for future in futures:
            try:
                results.append(ms.builder.BuilderResult(future.result(), None))
            except TimeoutError:
                results.append(ms.builder.BuilderResult(
                    None, f"LocalBuilder: Timeout, killed after {timeout_s} seconds"))
            except Exception as exc:  # the candidate's own compile error, or its process died
                results.append(ms.builder.BuilderResult(None, f"LocalBuilder: An exception occurred\n{exc}"))
        return results

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        while not self._idle.empty():
            self._idle.get().kill()

    def __enter__(self) -> BuildPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_builder(pool: BuildPool, timeout_s: float, reporter: ProgressReporter | None = None,
                 scheduler: Any = None) -> Any:
    """A MetaSchedule builder that builds in `pool`. With a reporter and scheduler, each round also

    - first commits every measured-but-unjoined round to the database: MetaSchedule joins a task's results
      only when it picks that task again (after a whole round-robin of all tasks at the start), so a run
      killed in its first half hour would otherwise leave nothing to resume from;
    - prints a progress line once built.
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class _PoolBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            if scheduler is not None:
                for task_id, record in enumerate(scheduler.tasks_):
                    if record.runner_futures is not None:
                        scheduler.join_running_task(task_id)
            results = pool.build(build_inputs, timeout_s)
            if reporter is not None:
                reporter.built(len(results), sum(r.error_msg is not None for r in results))
            return results

    return _PoolBuilder()


def measure_callbacks(reporter: ProgressReporter) -> list[Any]:
    """MetaSchedule's default callbacks, plus one that hands every task's measured results to the reporter."""
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
