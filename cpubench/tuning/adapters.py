"""MetaSchedule's builder, runner and measure callback as the tuner uses them: a lean build function, progress
reported each round, a local or RPC runner, and how candidates are timed during the search and at the end."""

from __future__ import annotations

import socket
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
