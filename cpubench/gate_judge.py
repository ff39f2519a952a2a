"""The regression gate run on a session: the bands for this machine (gate.expectations_for), the model's rows and
ONNX Runtime's share of the peak, and the sequential decision (gate.run_gate), timing undecided variants again
through the session's Measurement."""

from __future__ import annotations

from typing import Any

from .gate import expectations_for, machine_key
from .gate_decision import EXTENSION_SECONDS, GateOutcome, run_gate
from .results import REFERENCE_BACKEND
from .schedule import paired, paired_ratios
from .yardstick import PEAK


def floor_shares(suite: Any, model: str, reference_rounds: dict[int, float],
                 peak_rounds: dict[int, float] | None = None) -> list[float]:
    """ONNX Runtime's share of the float32 peak per rotation (its round against the peak kernel's round)."""

    flops, kernels = suite.store.flops(model), suite.launcher.yardstick_kernels()
    peak = peak_rounds if peak_rounds is not None else suite.measurement.yardstick_rounds(model).get(PEAK, {})
    if not flops or not isinstance(kernels.get(PEAK), dict):
        return []
    per_call = kernels[PEAK]["flops_per_call"]
    return [flops / per_call / ratio for ratio in paired(reference_rounds, peak).values() if ratio > 0]


def judge(suite: Any, model: str, data: dict[str, Any],
          variants: tuple[str, ...] | None = None) -> tuple[GateOutcome, str]:
    """The gate on one model of a session: bands for this machine, then the sequential decision, timing undecided
    variants again beside ONNX Runtime and the peak kernel. Returns the outcome and where the bands came from."""
    from .machine import bf16_class, host_profile

    settings = suite.settings
    variants = variants or settings.variants
    key = machine_key(settings.threads, settings.batch_size)
    flops = suite.store.flops(model)
    expectations = expectations_for(data, key, model, variants, bf16_class(), host_profile().vector_isa,
                                    None if flops is None else flops / 1e9)
    excused = {}
    for variant in variants:
        # A variant that cannot exist here (not installed, no bf16 hardware, no tuning log at all) is reported, not
        # failed, unless this machine's own runs expect it. A build failure or a dead worker always fails.
        state, why = suite.build_outcome(model, variant)
        if state == "unavailable" and variant not in expectations.own:
            excused[variant] = f"skipped: {why}"
    rows = [r for r in suite.results if r.model == model and r.timing]
    reference = next(r for r in rows if r.variant == REFERENCE_BACKEND)

    def retime(variants: list[str]) -> dict[str, list[float]]:
        schedule = suite.measurement.retime(model, [REFERENCE_BACKEND, *variants],
                                            seconds_per_variant=EXTENSION_SECONDS)
        for rounds in schedule.rounds.values():
            if rounds.failure is not None:
                raise rounds.failure
        ref = schedule.rounds[REFERENCE_BACKEND]
        more = {variant: paired_ratios(schedule.rounds[variant], ref) for variant in variants}
        peak = schedule.rounds.get(PEAK)
        more["peak_share"] = floor_shares(suite, model, ref.round_means, peak.round_means if peak else {})
        return more

    outcome = run_gate(model, rows, expectations, variants, excused,
                       floor_shares(suite, model, reference.rounds), retime)
    origins = sorted({band.origin for band in expectations.ratios.values()})
    note = f"bands for {key}: " + ", ".join(origins)
    return outcome, note
