"""Timing the whole tuned model: compiled from a log exactly as the `tvm-tuned` backend compiles it."""

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
