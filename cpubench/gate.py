"""Regression gate on ratios measured in one run: each backend's median over ONNX Runtime's.

Absolute times drift between runs and machines; a ratio of two backends timed minutes apart on the same
machine holds much better. Expected ratios live in benches/ratios.json, per machine (CPU name and threads),
and `pytest benches/ --gate-update` stores the current run's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .report import YARDSTICK, BenchRow, ratios

# Allowed ratio = expected x SLACK. Ratios on a 2-core machine wander by up to ~25% between runs (one run
# lands on a noisy minute, the other does not); a backend that fell back to a slow path or a tuning log that
# no longer applies costs 2x or more. 1.6 sits between the two.
SLACK = 1.6


def machine_key(threads: int, batch_size: int) -> str:
    try:
        from .tvm_support import host_cpu

        cpu = host_cpu()
    except ImportError:
        import platform

        cpu = platform.machine()
    return f"{cpu}-{threads}t-b{batch_size}"


@dataclass(frozen=True)
class Violation:
    model: str
    backend: str
    found: float | None  # None: the backend was selected but produced no timing (build failed, skipped)
    allowed: float
    expected: float

    def __str__(self) -> str:
        if self.found is None:
            return (f"{self.model} {self.backend}: no timing in this run (its build failed or it was skipped), "
                    f"expected a median of {self.expected:.2f}x {YARDSTICK}'s")
        return (f"{self.model} {self.backend}: median is {self.found:.2f}x {YARDSTICK}'s, allowed at most "
                f"{self.allowed:.2f}x (expected {self.expected:.2f}x, slack {SLACK}x)")


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


def check(rows: list[BenchRow], expected_for_machine: dict[str, dict[str, dict[str, float]]],
          selected: tuple[str, ...] = ()) -> tuple[list[Violation], list[str]]:
    """Violations, and the (model, backend) pairs that were checked, as text.

    A backend in `selected` that has an expected ratio but no timing is a violation too: a tuning log that no
    longer applies fails the tvm-tuned build, and the gate must not pass because that row went missing.
    """
    found = ratios(rows, YARDSTICK)
    violations, checked = [], []
    for model in dict.fromkeys(model for (model, _) in found):
        for backend in selected:
            entry = expected_for_machine.get(model, {}).get(backend)
            if entry is not None and backend != YARDSTICK and (model, backend) not in found:
                checked.append(f"{model}-{backend} missing")
                violations.append(Violation(model, backend, None, entry["max"], entry["expected"]))
    for (model, backend), ratio in sorted(found.items()):
        if backend == YARDSTICK:
            continue
        entry = expected_for_machine.get(model, {}).get(backend)
        if entry is None:
            continue
        checked.append(f"{model}-{backend} {ratio:.2f}x (≤ {entry['max']:.2f}x)")
        if ratio > entry["max"]:
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
