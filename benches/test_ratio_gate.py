"""Regression gate, two-sided: each variant's ratio to ONNX Runtime within its band, ONNX Runtime's share of this
CPU's float32 GEMM rate above its floor, no float32 variant implausibly fast (cpubench/gate.py).

Runs after every benchmark (the `verdict` marker; see cpubench/plugin.py), on every machine: with this machine's
stored expectations when benches/ratios.json has them, else with portable bounds. It fails, rather than passes,
when it compared nothing.
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
    if gate.YARDSTICK not in settings.variants:
        pytest.skip(f"{model_name}: --backends leaves out {gate.YARDSTICK}, the yardstick every band is measured "
                    "against; add it to gate this run")
    verdict_inputs(request.config, model_name, settings.variants)
    if request.config.getoption("benchmark_disable") and not request.config.getoption("benchmark_enable"):
        pytest.skip("--benchmark-disable: nothing was timed")
    rows = [r for r in suite.results if r.model == model_name and r.timing]
    if not any(r.backend == gate.YARDSTICK for r in rows):
        state, why = suite.build_outcome(model_name, gate.YARDSTICK)
        pytest.fail(f"{model_name}: {gate.YARDSTICK}, the yardstick, has no timing in this run ({state}: "
                    f"{why or 'no timing'}); nothing can be gated", pytrace=False)
    try:
        data = gate.load_expected(settings.gate_file)
    except UsageError as exc:
        pytest.fail(str(exc), pytrace=False)
    key = gate.machine_key(settings.threads, settings.batch_size)
    expectations = gate.expectations_for(data, key, model_name, settings.variants)
    excused = {}
    for variant in settings.variants:
        # A variant that cannot exist here (not installed, no bf16 hardware, no tuning log at all) is reported, not
        # failed, unless this machine's own entry expects it. A build failure or a dead worker always fails.
        state, why = suite.build_outcome(model_name, variant)
        if state == "unavailable" and variant not in expectations.own:
            excused[variant] = f"skipped: {why}"
    efficiency = {model_name: expectations.efficiency} if expectations.efficiency else None
    outcome = gate.check(rows, {model_name: expectations.ratios}, settings.variants, excused, efficiency)
    # A ratio out of band is timed again before it fails the run: both workers, interleaved rounds. A burst of
    # noise on a shared machine can move one short measurement; a regression moves both.
    confirmed = []
    for violation in outcome.violations:
        if violation.found is None or violation.kind != "ratio":
            confirmed.append(violation)
            continue
        again = gate.confirm_ratio(suite, model_name, violation.backend)
        note = f"{model_name}-{violation.backend} {violation.found:.2f}x, timed again: {again}"
        suite.verdicts.append(f"gate {model_name}: {note} (≤ {violation.allowed:.2f}x)")
        if again.low > violation.allowed:
            confirmed.append(gate.Violation(violation.model, violation.backend, again.value, violation.allowed,
                                            violation.expected, first=violation.found))
    suite.verdicts.append(f"gate {model_name} [{expectations.source}]: "
                          + "; ".join(outcome.checked + outcome.unchecked))
    assert outcome.checked, (f"{model_name}: the gate compared nothing with a bound, so it cannot pass: "
                             + "; ".join(outcome.unchecked or ["no variant besides the yardstick"]))
    assert not confirmed, f"gate ({expectations.source}): " + "; ".join(map(str, confirmed))
