"""Regression gate: each backend's median over ONNX Runtime's, measured in this run, within its stored band."""

from __future__ import annotations

import pytest

from cpubench import gate
from cpubench.errors import UsageError


def test_ratio_gate(suite, model_name):
    settings = suite.settings
    if settings.gate_update:
        pytest.skip("--gate-update: this run stores the expected ratios instead of checking them")
    rows = [r for r in suite.results if r.model == model_name and r.timing]
    if not any(r.backend == gate.YARDSTICK for r in rows) or len(rows) < 2:
        pytest.skip(f"{model_name}: needs {gate.YARDSTICK} and another backend timed in this run "
                    "(benchmarks disabled, deselected or skipped)")
    try:
        expected = gate.load_expected(settings.gate_file)
    except UsageError as exc:
        pytest.fail(str(exc), pytrace=False)
    key = gate.machine_key(settings.threads, settings.batch_size)
    machine = expected.get("machines", {}).get(key)
    if not machine or model_name not in machine.get("ratios", {}):
        pytest.skip(f"no expected ratios for {model_name} on {key} in {settings.gate_file}; "
                    "store them with `pytest benches/ --gate-update`")
    violations, checked = gate.check(rows, machine["ratios"], settings.backends)
    if not checked:
        pytest.skip(f"{model_name}: none of the backends that ran has an expected ratio on {key}")
    assert not violations, "ratio gate: " + "; ".join(map(str, violations))
