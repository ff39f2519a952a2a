"""Regression gate: each backend's median over ONNX Runtime's, measured in this run, within its stored band.

Runs after every benchmark (the `verdict` marker; see cpubench/plugin.py), on every machine: with this machine's
stored ratios when benches/ratios.json has them, else with portable bounds (cpubench/gate.py).
"""

from __future__ import annotations

import pytest

from cpubench import gate
from cpubench.errors import UsageError
from cpubench.plugin import VERDICT_MARKER, verdict_inputs

pytestmark = getattr(pytest.mark, VERDICT_MARKER)


def test_ratio_gate(suite, model_name, request):
    settings = suite.settings
    if settings.gate_update:
        pytest.skip("--gate-update: this run stores the expected ratios instead of checking them")
    if not set(settings.variants) - {gate.YARDSTICK}:
        pytest.skip(f"{model_name}: --backends selects no backend besides {gate.YARDSTICK}; nothing to compare")
    verdict_inputs(request.config, model_name, settings.variants)
    rows = [r for r in suite.results if r.model == model_name and r.timing]
    if not any(r.backend == gate.YARDSTICK for r in rows):
        state, why = suite.build_outcome(model_name, gate.YARDSTICK)
        pytest.skip(f"{model_name}: {gate.YARDSTICK}, the yardstick, has no timing in this run "
                    f"({'benchmarks disabled' if state == 'built' else why or 'not selected'})")
    try:
        data = gate.load_expected(settings.gate_file)
    except UsageError as exc:
        pytest.fail(str(exc), pytrace=False)
    key = gate.machine_key(settings.threads, settings.batch_size)
    expectations = gate.expectations_for(data, key, model_name, settings.variants)
    excused = {}
    for variant in settings.variants:
        # Bounds from other machines, or defaults, do not know whether a runtime exists here: a variant skipped as
        # unavailable (not installed, no bf16 on this CPU, no compatible tuning log) is reported, not failed.
        # A build failure always fails, and so does any variant missing where this machine's own ratio expects it.
        state, why = suite.build_outcome(model_name, variant)
        if state == "unavailable" and variant not in expectations.own:
            excused[variant] = f"skipped: {why}"
    violations, checked = gate.check(rows, {model_name: expectations.ratios}, settings.variants, excused)
    # A ratio out of band is timed again before it fails the run: both workers, interleaved rounds. A burst of
    # noise on a shared machine can move one short measurement; a regression moves both.
    confirmed = []
    for violation in violations:
        if violation.found is None:
            confirmed.append(violation)
            continue
        again = gate.confirm_ratio(suite, model_name, violation.backend)
        note = f"{model_name}-{violation.backend} {violation.found:.2f}x, timed again: {again}"
        suite.verdicts.append(f"gate {model_name}: {note} (≤ {violation.allowed:.2f}x)")
        if again.low > violation.allowed:
            confirmed.append(gate.Violation(violation.model, violation.backend, again.value, violation.allowed,
                                            violation.expected, first=violation.found))
    violations = confirmed
    suite.verdicts.append(f"gate {model_name} [{expectations.source}]: " + ("; ".join(checked) or "nothing to check"))
    assert checked, f"{model_name}: no backend besides {gate.YARDSTICK} ran, so the gate checked nothing"
    assert not violations, f"ratio gate ({expectations.source}): " + "; ".join(map(str, violations))
