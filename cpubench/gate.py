"""Regression gate, two-sided, on what one run measured in interleaved rounds.

- Every variant's ratio to ONNX Runtime stays within its band (an upper bound: a variant that fell back to a slow
  path or lost its tuning log).
- ONNX Runtime itself is held to its efficiency: its share of this CPU's float32 GEMM rate, timed in the same
  rotations (cpubench/yardstick.py). A slower ONNX Runtime, or a slower export, or everything at once, fails here.
- A float32 variant far above 100% of the GEMM rate is implausible (it ran in lower precision or skipped work).
- A ratio fails only when its whole interval is out of band, so a band can be narrow where the measurement is tight.

Expectations live in benches/ratios.json per machine (CPU name, threads, batch size); `pytest benches/
--gate-update` stores the current run's. A machine with no entry of its own is held to portable bounds from
stored machines with the same threads and batch size (bf16 bands only from machines with the same kind of bf16
hardware), else default bounds. int8 with no ratio stored for this machine: ONNX Runtime's must beat its float32,
the others are held to their backend's float32 band.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .results import YARDSTICK, BenchRow, Ratio, ratio_table, ratios
from .winograd import MULTIPLY_SHARE, WINOGRAD

# Allowed ratio = expected x SLACK. Ratios on a 2-core machine wander by up to ~25% between runs (one run
# lands on a noisy minute, the other does not); a backend that fell back to a slow path or a tuning log that
# no longer applies costs 2x or more. 1.6 sits between the two.
SLACK = 1.6
# Another CPU shifts every ratio (PyTorch eager / ONNX Runtime: 1.35 on Zen 4, about 2 on a Xeon with AMX; tuned
# TVM with a log transferred from another CPU: 1.3-1.5x where the CPU's own log gives about 1x). Portable bounds
# take the largest expected ratio among stored machines and allow 2x that: wide for noise and CPU differences,
# still far below what a fallback to untuned code costs (100x and more for TVM).
PORTABLE_SLACK = 2.0
# ONNX Runtime's efficiency may fall to expected / EFFICIENCY_SLACK (its own machine) or the lowest stored one /
# EFFICIENCY_PORTABLE_SLACK (elsewhere) before the gate fails: a 2x slowdown must fail, so both stay well below 2.
# Measured: ResNet18 in ONNX Runtime at 97-105% of the GEMM rate on Zen 3, Zen 5 and an AMX Xeon.
EFFICIENCY_SLACK = 1.4
EFFICIENCY_PORTABLE_SLACK = 1.6
# A float32 variant above this share of the GEMM rate did less arithmetic than the model asks for.
IMPLAUSIBLE_FP32_EFFICIENCY = 1.5
# For a model no stored machine knows: bounds that hold on any CPU for a backend that works as intended.
# A backend's bf16 variant is held to its backend's bound (it should only be faster). Untuned TVM runs naive loops
# (100-200x here); its bound only catches a collapse such as threads fighting each other.
DEFAULT_BOUNDS = {"tvm-tuned": 3.0, "torch": 8.0, "torch-compile": 8.0, "openvino": 8.0, "executorch": 8.0,
                  "litert": 8.0,
                  "tvm": 1000.0}
# ONNX Runtime's int8 on a machine with no int8 ratio of its own: faster than its own float32, or it is not running
# integer kernels (measured 0.32-0.55x on an AMX Xeon). Other backends' int8 is held to their float32 band: their
# int8 need not beat ONNX Runtime's float32 (torch-compile-int8 on EfficientNet-Lite0: 1.5x), only not be slower
# than their own float32 may be. Other machines' int8 ratios do not carry over: they hang on VNNI and AMX.
INT8_BOUND = 1.0


@dataclass(frozen=True)
class Expectations:
    """The bands one model's ratios are held to, and where they come from (printed with the verdict)."""

    ratios: dict[str, dict[str, float]]  # variant -> {"expected": x, "max": y}
    source: str
    own: frozenset[str]  # variants whose band was stored for this very machine
    efficiency: dict[str, float] | None = None  # the yardstick's {"expected": share, "min": share} of the GEMM rate


def machine_key(threads: int, batch_size: int) -> str:
    from .machine import gate_key

    return gate_key(threads, batch_size)


@dataclass(frozen=True)
class Violation:
    model: str
    backend: str
    found: float | None  # None: the backend was selected but produced no timing (build failed, skipped)
    allowed: float
    expected: float
    first: float | None = None  # the benchmark's ratio, when `found` is the confirming re-measurement
    kind: str = "ratio"  # "ratio", "efficiency" (the yardstick too slow) or "implausible" (too fast for fp32)

    def __str__(self) -> str:
        if self.kind == "efficiency":
            return (f"{self.model} {self.backend}: runs at {self.found:.0%} of this CPU's fp32 GEMM rate, expected "
                    f"{self.expected:.0%}, at least {self.allowed:.0%}: {YARDSTICK} itself (or its export) is slower")
        if self.kind == "implausible":
            return (f"{self.model} {self.backend}: {self.found:.0%} of this CPU's fp32 GEMM rate is implausible for "
                    f"float32 (at most {self.allowed:.0%}): it ran in lower precision or skipped work")
        if self.found is None:
            return (f"{self.model} {self.backend}: no timing in this run (its build failed or it was skipped), "
                    f"expected a median of {self.expected:.2f}x {YARDSTICK}'s")
        again = f" (benchmark {self.first:.2f}x, timed again {self.found:.2f}x)" if self.first is not None else ""
        return (f"{self.model} {self.backend}{again}: median is {self.found:.2f}x {YARDSTICK}'s, allowed at most "
                f"{self.allowed:.2f}x (expected {self.expected:.2f}x, slack {self.allowed / self.expected:.1f}x)")


def load_expected(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--gate-file: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("machines", {}), dict):
        raise UsageError(f"--gate-file: {path} should hold {{\"machines\": {{...}}}}")
    return data


def confirm_ratio(suite: Any, model: str, variant: str, seconds: float = 1.5) -> Ratio:
    """The variant's ratio to the yardstick timed again: both workers, interleaved rounds for `seconds` each. What
    the gate falls back on before failing a run on one noisy measurement."""
    from .schedule import paired_ratios
    from .stats import median_interval

    schedule = suite.retime(model, [YARDSTICK, variant], seconds_per_variant=seconds)
    for rounds in schedule.rounds.values():
        if rounds.failure is not None:
            raise rounds.failure
    pairs = paired_ratios(schedule.rounds[variant], schedule.rounds[YARDSTICK])
    return Ratio(*median_interval(pairs), pairs=len(pairs))


def expectations_for(data: dict[str, Any], key: str, model: str, variants: tuple[str, ...] = (),
                     bf16_kind: str | None = None) -> Expectations:
    """The band of every selected variant of `model`: this machine's stored ratio where there is one; else the
    portable bound from the other stored machines with the same threads and batch size (bf16: only machines with
    the same kind of bf16 hardware, `machine.bf16_class`; else its backend's fp32 bound); else DEFAULT_BOUNDS for
    its backend. Also the floor of ONNX Runtime's efficiency. Says where each band came from."""
    from .machine import bf16_class
    from .precision import Variant

    bf16_kind = bf16_kind or bf16_class()
    machines: dict[str, Any] = data.get("machines", {})
    own_entry = machines.get(key, {})
    own = own_entry.get("ratios", {}).get(model, {})
    shape = "-" + key.split("-")[-2] + "-" + key.split("-")[-1] if key.count("-") >= 2 else key  # `-2t-b1`
    others = {name: entry for name, entry in sorted(machines.items())
              if name != key and name.endswith(shape) and model in entry.get("ratios", {})}
    portable: dict[str, dict[str, float]] = {}
    for entry in others.values():
        same_bf16 = entry.get("bf16_class") == bf16_kind
        for backend, band in entry["ratios"][model].items():
            precision = Variant.parse(backend).precision
            if precision == "int8" or (precision != "fp32" and not same_bf16):
                continue
            worst = max(band["expected"], portable.get(backend, {}).get("expected", 0.0))
            portable[backend] = {"expected": worst, "max": round(worst * PORTABLE_SLACK, 3)}
    bands: dict[str, dict[str, float]] = {}
    origin: dict[str, list[str]] = {"own": [], "portable": [], "fp32 bound": [], "int8 bound": [], "default": []}
    for variant in variants or tuple(dict.fromkeys([*own, *portable])):
        base = Variant.parse(variant).backend
        if variant in own:
            bands[variant], where = own[variant], "own"
        elif Variant.parse(variant).precision == "int8" and base == YARDSTICK:
            bands[variant], where = {"expected": INT8_BOUND, "max": INT8_BOUND}, "int8 bound"
        elif variant in portable:
            bands[variant], where = portable[variant], "portable"
        elif base in portable:  # a reduced precision no comparable machine stored: no slower than its fp32
            bands[variant], where = portable[base], "fp32 bound"
        elif base in DEFAULT_BOUNDS:
            bands[variant], where = {"expected": DEFAULT_BOUNDS[base], "max": DEFAULT_BOUNDS[base]}, "default"
        else:
            continue
        origin[where].append(variant)
    efficiency, efficiency_source = None, ""
    stored = own_entry.get("efficiency", {}).get(model, {}).get(YARDSTICK)
    if stored:
        efficiency = stored
        efficiency_source = f"{YARDSTICK} efficiency stored for {key}"
    else:
        lowest = [e["efficiency"][model][YARDSTICK]["expected"] for e in others.values()
                  if YARDSTICK in e.get("efficiency", {}).get(model, {})]
        if lowest:
            efficiency = {"expected": min(lowest), "min": round(min(lowest) / EFFICIENCY_PORTABLE_SLACK, 3)}
            efficiency_source = (f"{YARDSTICK} efficiency: lowest stored for {model} / {EFFICIENCY_PORTABLE_SLACK}")
    parts = []
    if origin["own"]:
        parts.append(f"stored for {key}: {', '.join(origin['own'])}")
    if origin["portable"]:
        parts.append(f"portable bounds (largest ratio expected on {', '.join(others)} x {PORTABLE_SLACK}): "
                     f"{', '.join(origin['portable'])}")
    if origin["fp32 bound"]:
        parts.append(f"their backend's fp32 bound (no stored machine has {bf16_kind} bf16 hardware): "
                     f"{', '.join(origin['fp32 bound'])}")
    if origin["int8 bound"]:
        parts.append(f"faster than {YARDSTICK} fp32 (≤ {INT8_BOUND:g}x, no int8 ratio stored for {key}): "
                     f"{', '.join(origin['int8 bound'])}")
    if origin["default"]:
        parts.append("default bounds: " + ", ".join(f"{v} <= {bands[v]['max']:g}x" for v in origin["default"]))
    if efficiency_source:
        parts.append(efficiency_source)
    return Expectations(bands, "; ".join(parts) or "no bounds", frozenset(origin["own"]), efficiency)


@dataclass
class GateOutcome:
    violations: list[Violation]
    checked: list[str]  # what was compared with a bound, and found
    unchecked: list[str]  # selected variants nothing was compared for, and why: never enough to pass


def check(rows: list[BenchRow], expected_for_machine: dict[str, dict[str, dict[str, float]]],
          selected: tuple[str, ...] = (), excused: dict[str, str] | None = None,
          efficiency: dict[str, dict[str, float]] | None = None) -> GateOutcome:
    """Hold every row to its band: ratios to the yardstick (upper bounds), the yardstick's efficiency (a lower
    bound, per model in `efficiency`), and no float32 variant above IMPLAUSIBLE_FP32_EFFICIENCY of the GEMM rate.

    A variant in `selected` that has a band but no timing is a violation: a tuning log that no longer applies
    fails the tvm-tuned build, and the gate must not pass because that row went missing. Only a variant in
    `excused` (variant -> why: not installed, no such hardware) is listed as unchecked instead.
    """
    from .precision import Variant

    excused = excused or {}
    table = ratio_table(rows, YARDSTICK)
    outcome = GateOutcome([], [], [])
    models = dict.fromkeys(r.model for r in rows)
    for model in models:
        for backend in selected:
            entry = expected_for_machine.get(model, {}).get(backend)
            if backend == YARDSTICK or (model, backend) in table:
                continue
            if backend in excused:
                outcome.unchecked.append(f"{model}-{backend} not checked ({excused[backend]})")
            elif entry is not None:
                outcome.checked.append(f"{model}-{backend} missing")
                outcome.violations.append(Violation(model, backend, None, entry["max"], entry["expected"]))
            else:
                outcome.unchecked.append(f"{model}-{backend} not checked (no timing and no band)")
    for (model, backend), interval in sorted(table.items()):
        if backend == YARDSTICK:
            continue
        entry = expected_for_machine.get(model, {}).get(backend)
        if entry is None:
            outcome.unchecked.append(f"{model}-{backend} {interval} not checked (no band for it)")
            continue
        outcome.checked.append(f"{model}-{backend} {interval} (≤ {entry['max']:.2f}x)")
        # Out of band only when the whole interval is: a band can then be narrow where the measurement is tight.
        if interval.low > entry["max"]:
            outcome.violations.append(Violation(model, backend, interval.value, entry["max"], entry["expected"]))
    for row in rows:
        share = row.context.get("efficiency")
        if share is None or not row.timing:
            continue
        low, high = row.context["efficiency_low"], row.context["efficiency_high"]
        floor = (efficiency or {}).get(row.model)
        if row.backend == YARDSTICK and floor:
            outcome.checked.append(f"{row.model}-{YARDSTICK} {share:.0%} [{low:.0%}, {high:.0%}] of the GEMM rate "
                                   f"(≥ {floor['min']:.0%})")
            if high < floor["min"]:
                outcome.violations.append(Violation(row.model, row.backend, share, floor["min"], floor["expected"],
                                                    kind="efficiency"))
        ceiling = implausible_fp32_efficiency(row)
        if Variant.parse(row.backend).precision == "fp32" and low > ceiling:
            outcome.violations.append(Violation(row.model, row.backend, share, ceiling, 1.0, kind="implausible"))
    return outcome


def implausible_fp32_efficiency(row: BenchRow) -> float:
    """The share of the GEMM rate above which a float32 row did less arithmetic than its model asks for. Efficiency
    counts the model's direct multiplications, so a Winograd build (winograd.py), which needs as few as
    MULTIPLY_SHARE of them, may run that much faster before it is implausible."""
    if row.context.get("tvm_lowering") == WINOGRAD:
        return IMPLAUSIBLE_FP32_EFFICIENCY / MULTIPLY_SHARE
    return IMPLAUSIBLE_FP32_EFFICIENCY


def update(path: Path, key: str, rows: list[BenchRow], context: dict[str, Any]) -> dict[str, Any]:
    """Store this run's ratios (and ONNX Runtime's efficiency) as the expected ones for `key`, keeping other
    machines' entries."""
    data = load_expected(path) or {"slack": SLACK, "machines": {}}
    entries: dict[str, dict[str, dict[str, float]]] = {}
    for (model, backend), ratio in sorted(ratios(rows, YARDSTICK).items()):
        if backend != YARDSTICK:
            entries.setdefault(model, {})[backend] = {"expected": round(ratio, 3), "max": round(ratio * SLACK, 3)}
    if not entries:
        raise UsageError(f"--gate-update: no ratio to store (needs {YARDSTICK} and another backend timed)")
    efficiency = {r.model: {YARDSTICK: {"expected": round(r.context["efficiency"], 3),
                                        "min": round(r.context["efficiency"] / EFFICIENCY_SLACK, 3)}}
                  for r in rows if r.backend == YARDSTICK and "efficiency" in r.context}
    data["slack"] = SLACK
    data["machines"][key] = {"updated": time.strftime("%Y-%m-%d"), **context, "ratios": entries,
                             **({"efficiency": efficiency} if efficiency else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return data
