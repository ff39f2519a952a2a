"""Where a tuned model's time goes: the tuner's estimate (each task's best kernel timed alone, times its weight)
against the compiled model, call by call.

The whole model is timed as `tvm-tuned` runs it. Then every call the Relax VM makes is timed inside the model
(an instrument around each Call instruction): tuned kernels, kernels nothing tuned (layout transforms the weight
packing left in the graph), and the VM's builtins (allocation, shape handling). What the calls do not add up to is
the VM's own dispatch. The kernels are then compared with the tuner's stand-alone timings of the same functions:
the difference is what a kernel loses inside the model (cold caches, the previous kernel's output in another
layout), which isolated timings never see.

`python -m cpubench.tuning.breakdown MODEL [LOG [CPU]]` prints the table and writes it as JSON to
results/breakdown-<model>-<log>.json; CPU compiles for another LLVM CPU this machine runs (`x86-64-v3`).
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from .. import tvm_support as tv
from ..log_finder import read_metadata
from .model_timing import tuned_vm


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def breakdown(lowered: Any, target: Any, log_dir: Path, input_shape: tuple[int, ...], repeat: int = 30) -> dict:
    import numpy as np
    import tvm

    with tuned_vm(lowered, target, log_dir, input_shape, tag="breakdown") as (vm, data, coverage):
        timer = vm.time_evaluator("main", tvm.cpu(), number=10, repeat=repeat)
        model_ms = float(np.median(timer(data).results)) * 1e3

        per_call: dict[str, list[float]] = defaultdict(list)  # symbol -> seconds of each call, all repeats
        calls_per_run: dict[str, int] = defaultdict(int)
        state: dict[str, float] = {}

        def instrument(func, symbol, before, ret, *args):
            now = time.perf_counter()
            if before:
                state[symbol] = now
            else:
                per_call[symbol].append(now - state.pop(symbol, now))
            return 0  # VMInstrumentReturnKind.kNoOp

        vm.set_instrument(tvm.runtime.convert(instrument) if hasattr(tvm.runtime, "convert") else instrument)
        vm["main"](data)  # one run to count the calls
        for symbol, values in per_call.items():
            calls_per_run[symbol] = len(values)
        per_call.clear()
        instrumented = []
        for _ in range(repeat):
            start = time.perf_counter()
            vm["main"](data)
            instrumented.append(time.perf_counter() - start)
        vm.set_instrument(None)

    meta = read_metadata(log_dir)
    tuner_us = {t["task"]: t["best_us"] for t in meta.get("tasks", []) if t.get("best_us") is not None}
    weights = {t["task"]: t.get("weight", 1) for t in meta.get("tasks", [])}
    tuned = set(coverage.tunable)
    rows = []
    for symbol, values in per_call.items():
        per_run = calls_per_run.get(symbol, 1)
        task = symbol.removesuffix("_prepacked")  # SplitLayoutRewritePreproc renames the kernels it repacks for
        in_model_us = sum(values) / repeat * 1e6  # all calls of this function in one run
        kind = ("tuned kernel" if task in tuned else
                "VM builtin" if symbol.startswith(("vm.", "relax.", "ndarray", "runtime.")) else "untuned kernel")
        alone = tuner_us.get(task)
        rows.append({"function": symbol, "kind": kind, "calls": per_run,
                     "in_model_us": round(in_model_us, 1),
                     "tuner_us": round(alone * weights.get(task, per_run), 1) if alone is not None else None})
    rows.sort(key=lambda r: -r["in_model_us"])
    by_kind: dict[str, float] = defaultdict(float)
    for row in rows:
        by_kind[row["kind"]] += row["in_model_us"] / 1e3
    tuned_rows = [r for r in rows if r["kind"] == "tuned kernel" and r["tuner_us"] is not None]
    estimate_ms = sum(r["tuner_us"] for r in tuned_rows) / 1e3
    calls_ms = sum(by_kind.values())
    instrumented_ms = sum(instrumented) / len(instrumented) * 1e3  # a mean, like the per-call sums
    return {
        "log": log_dir.name, "target": str(target), "model_ms": round(model_ms, 3),
        "tuner_estimate_ms": round(estimate_ms, 3),
        "tuned_kernels_in_model_ms": round(by_kind["tuned kernel"], 3),
        "untuned_kernels_ms": round(by_kind["untuned kernel"], 3),
        "vm_builtins_ms": round(by_kind["VM builtin"], 3),
        "instrumented_run_ms": round(instrumented_ms, 3),
        # The instrumented run minus its calls: the VM's dispatch plus the instrument's own cost per call.
        "between_calls_ms": round(instrumented_ms - calls_ms, 3),
        "calls_per_run": sum(calls_per_run.values()),
        "functions": rows,
    }


def main(argv: list[str]) -> int:
    from ..models import build_model
    from ..onnx_export import export_onnx

    model_name = argv[0] if argv else "resnet18"
    model = build_model(model_name, None, 1, None)
    logs = Path(__file__).resolve().parents[2] / "tuning_logs" / model.disk_key
    log_dir = Path(argv[1]) if len(argv) > 1 else None
    if log_dir is None:
        from ..log_finder import choose_log

        log_dir = choose_log(logs.parent, model.disk_key, 2).log.path
    elif not log_dir.is_dir():
        log_dir = logs / argv[1]
    threads = int(read_metadata(log_dir).get("cores") or 2)
    tv.set_runtime_threads(threads)
    target = tv.host_target(threads, argv[2] if len(argv) > 2 else None)
    lowered = tv.lower_for_tuning(tv.import_onnx(export_onnx(model), model.input_shape, model.input_name), target,
                                  tv.log_lowering(log_dir))
    result = breakdown(lowered, target, log_dir, model.input_shape)
    out = Path(__file__).resolve().parents[2] / "results" / f"breakdown-{model.disk_key}-{log_dir.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "functions"}, indent=2))
    for row in result["functions"][:25]:
        print(f"{row['function']:<40} {row['kind']:<15} x{row['calls']:<3} {row['in_model_us']:>9.1f} us in model"
              + (f" {row['tuner_us']:>9.1f} us alone" if row["tuner_us"] is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
