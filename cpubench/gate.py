"""Regression gate on ratios measured in one run: each backend's median over ONNX Runtime's.

Absolute times drift between runs and machines; a ratio of two backends timed minutes apart on the same
machine holds much better. Expected ratios live in benches/ratios.json, per machine (CPU name and threads),
and `pytest benches/ --gate-update` stores the current run's. A machine with no entry of its own is held to
portable bounds: the largest ratio any stored machine expects, with a wider slack, so the gate runs everywhere
and still catches a backend that fell back to a slow path (5x or worse) or lost its tuning log.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .results import YARDSTICK, BenchRow, Ratio, ratio_table, ratios

# Allowed ratio = expected x SLACK. Ratios on a 2-core machine wander by up to ~25% between runs (one run
# lands on a noisy minute, the other does not); a backend that fell back to a slow path or a tuning log that
# no longer applies costs 2x or more. 1.6 sits between the two.
SLACK = 1.6
# Another CPU shifts every ratio (PyTorch eager / ONNX Runtime: 1.35 on Zen 4, about 2 on a Xeon with AMX; tuned
# TVM with a log transferred from another CPU: 1.3-1.5x where the CPU's own log gives about 1x). Portable bounds
# take the largest expected ratio among stored machines and allow 2x that: wide for noise and CPU differences,
# still far below what a fallback to untuned code costs (100x and more for TVM).
PORTABLE_SLACK = 2.0
# For a model no stored machine knows: bounds that hold on any CPU for a backend that works as intended.
# A backend's bf16 variant is held to its backend's bound (it should only be faster). Untuned TVM runs naive loops
# (100-200x here); its bound only catches a collapse such as threads fighting each other.
DEFAULT_BOUNDS = {"tvm-tuned": 3.0, "torch": 8.0, "torch-compile": 8.0, "openvino": 8.0, "executorch": 8.0,
                  "litert": 8.0,
                  "tvm": 1000.0}


@dataclass(frozen=True)
class Expectations:
    """The bands one model's ratios are held to, and where they come from (printed with the verdict)."""

    ratios: dict[str, dict[str, float]]  # variant -> {"expected": x, "max": y}
    source: str
    own: frozenset[str]  # variants whose band was stored for this very machine


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

    def __str__(self) -> str:
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


def expectations_for(data: dict[str, Any], key: str, model: str, variants: tuple[str, ...] = ()) -> Expectations:
    """The band of every selected variant of `model`: this machine's stored ratio where there is one; else the
    portable bound from the other stored machines (same batch size); else DEFAULT_BOUNDS for its backend. Never
    nothing: the gate runs on every machine, and says where each band came from."""
    from .precision import Variant

    machines: dict[str, Any] = data.get("machines", {})
    own = machines.get(key, {}).get("ratios", {}).get(model, {})
    batch = key.rsplit("-", 1)[-1]
    others = {name: entry["ratios"][model] for name, entry in sorted(machines.items())
              if name != key and name.endswith(f"-{batch}") and model in entry.get("ratios", {})}
    portable: dict[str, dict[str, float]] = {}
    for ratios_of_machine in others.values():
        for backend, entry in ratios_of_machine.items():
            worst = max(entry["expected"], portable.get(backend, {}).get("expected", 0.0))
            portable[backend] = {"expected": worst, "max": round(worst * PORTABLE_SLACK, 3)}
    bands: dict[str, dict[str, float]] = {}
    origin: dict[str, list[str]] = {"own": [], "portable": [], "default": []}
    for variant in variants or tuple(dict.fromkeys([*own, *portable])):
        base = Variant.parse(variant).backend
        if variant in own:
            bands[variant] = own[variant]
            origin["own"].append(variant)
        elif variant in portable:
            bands[variant] = portable[variant]
            origin["portable"].append(variant)
        elif base in DEFAULT_BOUNDS:
            bands[variant] = {"expected": DEFAULT_BOUNDS[base], "max": DEFAULT_BOUNDS[base]}
            origin["default"].append(variant)
    parts = []
    if origin["own"]:
        parts.append(f"stored for {key}: {', '.join(origin['own'])}")
    if origin["portable"]:
        parts.append(f"portable bounds (largest ratio expected on {', '.join(others)} x {PORTABLE_SLACK}): "
                     f"{', '.join(origin['portable'])}")
    if origin["default"]:
        parts.append("default bounds: " + ", ".join(f"{v} <= {bands[v]['max']:g}x" for v in origin["default"]))
    return Expectations(bands, "; ".join(parts) or "no bounds", frozenset(origin["own"]))


def check(rows: list[BenchRow], expected_for_machine: dict[str, dict[str, dict[str, float]]],
          selected: tuple[str, ...] = (), excused: dict[str, str] | None = None,
          ) -> tuple[list[Violation], list[str]]:
    """Violations, and the (model, backend) pairs that were checked, as text.

    A backend in `selected` that has an expected ratio but no timing is a violation too: a tuning log that no
    longer applies fails the tvm-tuned build, and the gate must not pass because that row went missing. Only a
    backend in `excused` (backend -> why, e.g. skipped as not installed where no own entry expects it) is listed
    as unchecked instead.
    """
    excused = excused or {}
    table = ratio_table(rows, YARDSTICK)
    found = {key: ratio.value for key, ratio in table.items()}
    violations, checked = [], []
    for model in dict.fromkeys(model for (model, _) in found):
        for backend in selected:
            entry = expected_for_machine.get(model, {}).get(backend)
            if entry is not None and backend != YARDSTICK and (model, backend) not in found:
                if backend in excused:
                    checked.append(f"{model}-{backend} not checked ({excused[backend]})")
                    continue
                checked.append(f"{model}-{backend} missing")
                violations.append(Violation(model, backend, None, entry["max"], entry["expected"]))
    for (model, backend), ratio in sorted(found.items()):
        if backend == YARDSTICK:
            continue
        entry = expected_for_machine.get(model, {}).get(backend)
        if entry is None:
            continue
        interval = table[(model, backend)]
        checked.append(f"{model}-{backend} {interval} (≤ {entry['max']:.2f}x)")
        # Out of band only when the whole interval is: a band can then be narrow where the measurement is tight.
        if interval.low > entry["max"]:
            violations.append(Violation(model, backend, ratio, entry["max"], entry["expected"]))
    return violations, checked


def update(path: Path, key: str, rows: list[BenchRow], context: dict[str, Any]) -> dict[str, Any]:
    """Store this run's ratios as the expected ones for `key`, keeping other machines' entries."""
    data = load_expected(path) or {"slack": SLACK, "machines": {}}
    entries: dict[str, dict[str, dict[str, float]]] = {}
    for (model, backend), ratio in sorted(ratios(rows, YARDSTICK).items()):
        if backend != YARDSTICK:
            entries.setdefault(model, {})[backend] = {"expected": round(ratio, 3), "max": round(ratio * SLACK, 3)}
    if not entries:
        raise UsageError(f"--gate-update: no ratio to store (needs {YARDSTICK} and another backend timed)")
    data["slack"] = SLACK
    data["machines"][key] = {"updated": time.strftime("%Y-%m-%d"), **context, "ratios": entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return data
