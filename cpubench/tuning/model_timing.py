"""Timing the whole tuned model: compiled from a log exactly as the `tvm-tuned` backend compiles it, in this process
(the tuner's checks) or in a worker process beside the yardstick, as a benchmark run times it (the final number)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import tvm_support as tv
from ..errors import UsageError


@contextlib.contextmanager
def tuned_vm(lowered: Any, target: Any, log_dir: Path, input_shape: tuple[int, ...],
             tag: str = "check") -> Iterator[tuple[Any, Any, tv.Coverage]]:
    """(VM, an input, coverage) of the model compiled from the log as `tvm-tuned` compiles it, called once; the
    throwaway library is deleted afterwards."""
    import numpy as np
    import tvm

    lib_path = log_dir.parent / f".{log_dir.name}-{tag}.so"
    try:
        coverage = tv.build_tuned(lowered, target, log_dir, lib_path, seal=False)  # deleted below
        if not coverage.complete:
            raise UsageError(f"tuning log {log_dir} has no record for {', '.join(coverage.missing)}")
        vm = tv.load_vm(lib_path)
        data = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(input_shape).astype("float32"))
        vm["main"](data)
        yield vm, data, coverage
    finally:
        lib_path.unlink(missing_ok=True)


def measure_model_ms(lowered: Any, target: Any, log_dir: Path, input_shape: tuple[int, ...],
                     repeat: int = 15) -> float:
    """Median latency of the whole tuned model, compiled from the log exactly as the `tvm-tuned` backend does."""
    import numpy as np
    import tvm

    with tuned_vm(lowered, target, log_dir, input_shape) as (vm, data, _):
        timer = vm.time_evaluator("main", tvm.cpu(), number=5, repeat=repeat)
        return float(np.median(timer(data).results)) * 1e3


def time_in_workers(suite: Any, model: str, log_dir: Path, seconds: float = 2.0) -> dict[str, Any]:
    """Time the tuned model compiled from `log_dir` (tvm-tuned in a worker of its own) and the yardstick in
    interleaved rounds, as a benchmark run would: the tuner's final number and its ratio, never timed in the
    tuning process. Built, timed, closed. `suite` is the run's SuiteSession."""
    from dataclasses import asdict

    import numpy as np

    from .. import machine_load
    from ..precision import Variant
    from ..results import REFERENCE_BACKEND
    from ..schedule import interleave, paired_ratios
    from ..stats import median_interval

    variant = Variant("tvm-tuned")
    worker, _ = suite.launcher.start_worker(model, variant.key, tuning_log=str(log_dir), label="just-tuned")
    try:
        yardstick = suite.launcher.timing_runner(model, REFERENCE_BACKEND)
        before = machine_load.snapshot()
        schedule = interleave({variant.key: worker, REFERENCE_BACKEND: yardstick}, seconds_per_variant=seconds,
                              min_rounds=10, round_seconds=suite.settings.round_ms / 1e3, always=(REFERENCE_BACKEND,))
        load = machine_load.between(before, machine_load.snapshot())
    finally:
        worker.close()
    tuned, reference = schedule.rounds[variant.key], schedule.rounds[REFERENCE_BACKEND]
    for rounds in (tuned, reference):
        if rounds.failure is not None:
            raise UsageError(f"timing the tuned model: {rounds.failure}")
    ratio, low, high = median_interval(paired_ratios(tuned, reference))
    return {"model_ms": float(np.median(tuned.values)) * 1e3, "reference_backend": REFERENCE_BACKEND,
            "reference_ms": float(np.median(reference.values)) * 1e3, "ratio": ratio, "ratio_low": low,
            "ratio_high": high, "timed": f"tvm-tuned and {REFERENCE_BACKEND} in worker processes of their own, "
                                      f"{schedule.rotations} interleaved rotations",
            "machine_load": {**asdict(load), "said": load.describe()} if load else None}
