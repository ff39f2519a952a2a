"""Regression gate: each variant's ratio to ONNX Runtime inside its band, ONNX Runtime's share of this CPU's float32
peak above its floor, no float32 variant above the peak; undecided variants timed again, up to a cap
(cpubench/gate.py).

Runs after every benchmark (the `verdict` marker; see cpubench/plugin.py), on every machine: with this machine's
stored bands when benches/ratios.json has them, else with bands widened for what differs. It fails, rather than
passes, when it compared nothing.
"""

from __future__ import annotations

import pytest

from cpubench import gate
from cpubench.errors import UsageError
from cpubench.plugin import VERDICT_MARKER, verdict_inputs
from cpubench.results import REFERENCE_BACKEND

pytestmark = getattr(pytest.mark, VERDICT_MARKER)


def test_ratio_gate(suite, model_name, request):
    settings = suite.settings
    if settings.gate_update:
        pytest.skip("--gate-update: this run stores its ratios as bands instead of checking them")
    if REFERENCE_BACKEND not in settings.variants:
        pytest.skip(f"{model_name}: --backends leaves out {REFERENCE_BACKEND}, which every band is measured "
                    "against; add it to gate this run")
    verdict_inputs(request.config, model_name, settings.variants)
    if request.config.getoption("benchmark_disable") and not request.config.getoption("benchmark_enable"):
        pytest.skip("--benchmark-disable: nothing was timed")
    rows = [r for r in suite.results if r.model == model_name and r.timing]
    if not any(r.variant == REFERENCE_BACKEND for r in rows):
        state, why = suite.build_outcome(model_name, REFERENCE_BACKEND)
        pytest.fail(f"{model_name}: {REFERENCE_BACKEND}, the reference backend, has no timing in this run ({state}: "
                    f"{why or 'no timing'}); nothing can be gated", pytrace=False)
    try:
        data = gate.load_expected(settings.gate_file)
    except UsageError as exc:
        pytest.fail(str(exc), pytrace=False)
    outcome, expectations_note = suite.judge(model_name, data)
    suite.verdicts.append(f"gate {model_name}: " + "; ".join(outcome.checked + outcome.unchecked_said()))
    for notice in outcome.notices:
        suite.verdicts.append(f"gate {model_name}: {notice}")
    assert outcome.checked, (f"{model_name}: the gate compared nothing with a band, so it cannot pass: "
                             + "; ".join(outcome.unchecked_said() or ["no variant besides the reference backend"]))
    load = getattr(getattr(suite, "measurement", None), "load", {}).get(model_name)
    busy = f" (while it was timed, {load.describe()})" if load is not None and load.busy else ""
    assert not outcome.failures, f"gate ({expectations_note}): " + "; ".join(map(str, outcome.failures)) + busy
