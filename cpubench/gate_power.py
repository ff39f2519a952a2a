"""The regression gate's power, measured: how often it fails an unchanged build (false alarms) and how often it
catches one variant made k times slower (detection), at CI's size (`make test`'s quick run).

Every variant of a model is built once; then, for each replicate, every condition (unchanged; ONNX Runtime,
OpenVINO, torch.compile each made 1.25x, 1.5x and 2x slower by doing that much more work per call: worker_process.py's
slowdown) is timed afresh in interleaved rotations at the quick run's size and judged by the gate with this
machine's stored bands, extensions included. Conditions run in a shuffled order within a replicate, so the
machine's drift spreads over all of them. `pytest benches/ -m power` runs it (benches/test_gate_power.py).
"""

from __future__ import annotations

import random
import time
from typing import Any

from .results import REFERENCE_BACKEND, BenchRow

SLOWED = (REFERENCE_BACKEND, "openvino", "torch-compile")
FACTORS = (1.25, 1.5, 2.0)
QUICK_SECONDS = 0.5  # make test's --benchmark-max-time
QUICK_MIN_ROUNDS = 5  # make test's --benchmark-min-rounds


def set_slowdown(suite: Any, model: str, variant: str, factor: float) -> None:
    """Every process timing `variant` does `factor` times the work per call from now on."""
    runner = suite.launcher.timing_runner(model, variant)
    for worker in getattr(runner, "workers", [runner]):
        worker.request("slowdown", factor)
        worker.pause()  # stopped again until its next round, as after every round


def quick_rows(suite: Any, model: str, variants: list[str]) -> list[BenchRow]:
    """One quick-size interleaved measurement of `variants` (ONNX Runtime and the yardstick with them), as rows the
    gate reads."""
    from .plugin import efficiency_context
    from .schedule import interleave
    from .yardstick import GEMMS, PEAK

    runners: dict[str, Any] = {variant: suite.launcher.timing_runner(model, variant) for variant in variants}
    runners.update(suite.launcher.start_yardstick(model))
    schedule = interleave(runners, seconds_per_variant=QUICK_SECONDS, min_rounds=QUICK_MIN_ROUNDS,
                          round_seconds=suite.settings.round_ms / 1e3, always=(REFERENCE_BACKEND, PEAK),
                          sparse=GEMMS)
    # efficiency_context reads the yardstick's rounds of this measurement
    suite.measurement.replace_schedule(model, schedule)
    rows = []
    for variant in variants:
        rounds = schedule.rounds[variant]
        if rounds.failure is not None:
            raise rounds.failure
        loaded = suite.launcher.build(model, variant)
        context = {key: loaded.info[key] for key in ("tvm_lowering",) if key in loaded.info}
        context.update(efficiency_context(suite, model, rounds.round_means))
        rows.append(BenchRow(model, variant, loaded.top1, {"median": 0.0}, context, rounds.round_means))
    return rows


def measure_power(suite: Any, model: str, data: dict[str, Any], replicates: int, slowed: tuple[str, ...] = SLOWED,
                  factors: tuple[float, ...] = FACTORS, seed: int = 0, log: Any = print) -> dict[str, Any]:
    """Run every condition `replicates` times; per condition, how many runs the gate failed and which variants it
    named."""
    from .schedule import LONG_CALL_SECONDS

    # Variants whose call outlasts a few rounds (untuned TVM, 1-2 s a call) are left out: held to a 1000x bound,
    # they would take most of the time and say nothing about the gate's power.
    variants = [v for v in suite.settings.variants if _builds(suite, model, v)
                and suite.launcher.build(model, v).process["first_call_seconds"] <= LONG_CALL_SECONDS]
    conditions = [("unchanged", 1.0)] + [(variant, factor) for variant in slowed if variant in variants
                                         for factor in factors]
    rng = random.Random(seed)
    outcomes: dict[str, dict[str, Any]] = {}
    started = time.time()
    kept = list(suite.results)  # the gate reads suite.results; the report must not show these quick rows
    try:
        _replicates(suite, model, data, replicates, variants, conditions, rng, outcomes, started, log)
    finally:
        suite.results[:] = kept
    return {"model": model, "replicates": replicates, "quick_seconds": QUICK_SECONDS,
            "quick_min_rounds": QUICK_MIN_ROUNDS, "variants": variants, "conditions": outcomes,
            "wall_seconds": round(time.time() - started, 1)}


def _replicates(suite: Any, model: str, data: dict[str, Any], replicates: int, variants: list[str],
                conditions: list[tuple[str, float]], rng: random.Random, outcomes: dict[str, dict[str, Any]],
                started: float, log: Any) -> None:
    from .gate_judge import judge

    for replicate in range(replicates):
        order = conditions[:]
        rng.shuffle(order)
        for variant, factor in order:
            name = "unchanged" if variant == "unchanged" else f"{variant} x{factor:g}"
            if variant != "unchanged":
                set_slowdown(suite, model, variant, factor)
            try:
                rows = quick_rows(suite, model, variants)
                suite.results[:] = [r for r in suite.results if r.model != model] + rows
                outcome, _ = judge(suite, model, data, tuple(variants))
            finally:
                if variant != "unchanged":
                    set_slowdown(suite, model, variant, 1.0)
            named = sorted({f.variant for f in outcome.failures})
            entry = outcomes.setdefault(name, {"variant": variant, "factor": factor, "runs": 0, "failed": 0,
                                               "caught": 0, "named": {}, "looks": []})
            entry["runs"] += 1
            entry["failed"] += bool(outcome.failures)
            entry["caught"] += variant in named
            for other in named:
                entry["named"][other] = entry["named"].get(other, 0) + 1
            entry["looks"].append(max([f.looks for f in outcome.failures] or [1]))
            log(f"[{time.time() - started:6.0f} s] replicate {replicate + 1}/{replicates} {name}: "
                + (f"FAIL {', '.join(named)}" if named else "pass"))


def _builds(suite: Any, model: str, variant: str) -> bool:
    try:
        suite.launcher.build(model, variant)
        return True
    except Exception:  # skipped or failed variants are left out of the power measurement
        return False
