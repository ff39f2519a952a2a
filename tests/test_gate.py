"""The regression gate on made-up rows, no worker started: bands from stored runs and how they travel between
machines, the sequential decision (more rotations where one run's interval cannot decide), ONNX Runtime's floor
against the CPU's peak, what --gate-update stores and refuses, and the slowdown that proves the gate
(CPUBENCH_SLOWDOWN)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from cpubench import gate, gate_decision, gate_judge
from cpubench.errors import UsageError
from cpubench.gate import Band, Expectations
from cpubench.results import REFERENCE_BACKEND, BenchRow
from cpubench.stats import median_interval, percentile_stats

REFERENCE_SECONDS = 0.01


def rows_of(model: str, ratios: dict[str, list[float]], contexts: dict[str, dict] | None = None) -> list[BenchRow]:
    """ONNX Runtime's row and one row per variant whose round r takes ratios[variant][r] x ONNX Runtime's."""
    contexts = contexts or {}
    count = max((len(values) for values in ratios.values()), default=10)
    made = {REFERENCE_BACKEND: [1.0] * count, **ratios}
    rows = []
    for variant, values in made.items():
        rounds = {r: REFERENCE_SECONDS * value for r, value in enumerate(values)}
        rows.append(BenchRow(model, variant, 285, percentile_stats(list(rounds.values()), 1),
                             {"threads": 2, "batch_size": 1, **contexts.get(variant, {})}, rounds))
    return rows


def around(value: float, count: int = 10) -> list[float]:
    """`count` values within 2% of `value`, a little different each."""
    return [value * (1 + 0.01 * ((i * 3) % 5 - 2)) for i in range(count)]


def shares(value: float, **context) -> dict:
    """A row's share of the peak, as plugin.efficiency_context writes it."""
    return {"peak_share": value, "peak_share_low": value * 0.97, "peak_share_high": value * 1.03, **context}


# Straddling a band whose top is 1.1: median 1.065 [1.035, 1.165]; and median 1.135 [1.075, 1.18].
STRADDLING_BELOW = [0.95, 1.02, 1.18, 1.05, 1.2, 0.98, 1.15, 1.08, 1.22, 1.0]
STRADDLING_ABOVE = [1.0, 1.16, 1.2, 1.12, 1.22, 1.05, 1.15, 1.0, 1.18, 1.1]
TOP_1_1 = Band(1.0, 0.1, "own", 5)


class Retime:
    """A stand-in for the session's retime: records what it was asked and answers with the given rounds."""

    def __init__(self, answer: dict[str, list[float]]) -> None:
        self.answer, self.asked = answer, []

    def __call__(self, variants: list[str]) -> dict[str, list[float]]:
        self.asked.append(list(variants))
        return {key: list(values) for key, values in self.answer.items() if key in variants or key == "peak_share"}


def judge_rows(rows, bands: dict[str, Band], retime=None, floor: Band | None = None, floor_shares=(),
               excused=None, extensions: int = gate_decision.EXTENSIONS,
               selected: tuple[str, ...] | None = None) -> gate_decision.GateOutcome:
    """gate_decision.run_gate on `rows` with these bands (every timed row selected unless said)."""
    selected = selected or tuple(dict.fromkeys(r.variant for r in rows))
    return gate_decision.run_gate(rows[0].model, rows, Expectations(bands, floor, "no floor in this test"), selected,
                         excused or {}, list(floor_shares), retime, extensions)


def bands_from(file, key: str, variants: tuple[str, ...], model: str = "resnet18", bf16_kind: str = "none",
               vector_isa: str = "avx2") -> Expectations:
    return gate.expectations_for(gate.load_expected(file), key, model, variants, bf16_kind, vector_isa, None)


# --- stored bands, end to end -------------------------------------------------------------------------------------


def test_gate_passes_on_stored_bands_and_names_a_2x_regression(tmp_path):
    file = tmp_path / "ratios.json"
    measured = {"torch": around(2.0), "tvm": around(200.0), "tvm-tuned": around(1.5)}
    gate.update(file, "cpu-2t-b1", rows_of("resnet18", measured), {"threads": 2})
    variants = ("onnxruntime", "torch", "tvm", "tvm-tuned")
    expectations = bands_from(file, "cpu-2t-b1", variants)
    assert expectations.own == frozenset(variants[1:])
    again = gate_decision.run_gate("resnet18", rows_of("resnet18", measured), expectations, variants, {}, [])
    assert again.failures == [] and len(again.checked) == 3
    slower = rows_of("resnet18", {**measured, "tvm-tuned": around(3.0)})
    retime = Retime({"tvm-tuned": around(3.0)})
    failures = gate_decision.run_gate("resnet18", slower, expectations, variants, {}, [], retime).failures
    assert [(f.variant, f.kind) for f in failures] == [("tvm-tuned", "ratio")]
    assert str(failures[0]).startswith("resnet18-tvm-tuned: 3.00× [")
    assert "above its band [1.15, 1.95] (own, 1 runs): slower than stored" in str(failures[0])


def test_gate_tolerates_run_to_run_wander_within_its_band_and_not_1_5x():
    band = gate.band_from_runs([2.0])  # one stored run: the widest band
    assert judge_rows(rows_of("resnet18", {"torch": around(2.0 * 1.25)}), {"torch": band}).failures == []
    slower = judge_rows(rows_of("resnet18", {"torch": around(2.0 * 1.5)}), {"torch": band})
    assert [(f.variant, f.kind) for f in slower.failures] == [("torch", "ratio")]


# --- the sequential decision --------------------------------------------------------------------------------------


def test_an_unchanged_variant_straddling_the_top_is_timed_again_and_passes_when_it_lands_inside():
    first = median_interval(STRADDLING_BELOW)
    assert first[1] < TOP_1_1.high < first[2]  # the premise: one run's interval cannot decide
    retime = Retime({"torch": around(1.0, 30)})
    outcome = judge_rows(rows_of("resnet18", {"torch": STRADDLING_BELOW}), {"torch": TOP_1_1}, retime)
    assert retime.asked == [["torch"]]
    assert outcome.failures == [] and outcome.notices == []
    assert len(outcome.checked) == 1 and "resnet18-torch" in outcome.checked[0] and "2 looks" in outcome.checked[0]


def test_a_variant_1_5x_slower_fails_after_one_retime_and_is_named():
    band = Band(1.0, gate.MAX_MARGIN, "own", 5)
    retime = Retime({"openvino": around(1.5)})
    outcome = judge_rows(rows_of("resnet18", {"openvino": around(1.5)}), {"openvino": band}, retime)
    assert retime.asked == [["openvino"]]  # outside on the first look: timed once more before failing
    assert [(f.variant, f.kind, f.looks) for f in outcome.failures] == [("openvino", "ratio", 2)]
    text = str(outcome.failures[0])
    assert text.startswith("resnet18-openvino: 1.50× [") and "after 2 looks" in text
    assert "above its band [0.769, 1.3] (own, 5 runs): slower than stored" in text


def test_without_retime_the_median_decides():
    rows = rows_of("resnet18", {"torch": STRADDLING_BELOW, "openvino": STRADDLING_ABOVE, "litert": around(1.5)})
    bands = {"torch": TOP_1_1, "openvino": TOP_1_1, "litert": TOP_1_1}
    outcome = judge_rows(rows, bands, retime=None)
    # Below the top passes, above it fails, on the first look too: nothing more can be timed.
    assert [(f.variant, f.kind, f.looks) for f in outcome.failures] == [("openvino", "ratio", 1),
                                                                        ("litert", "ratio", 1)]
    assert [line.split()[0] for line in outcome.checked] == ["resnet18-torch", "resnet18-openvino", "resnet18-litert"]


def test_at_the_cap_the_median_decides():
    retime = Retime({})  # more rotations that never settle it
    rows = rows_of("resnet18", {"torch": STRADDLING_BELOW, "openvino": STRADDLING_ABOVE})
    outcome = judge_rows(rows, {"torch": TOP_1_1, "openvino": TOP_1_1}, retime, extensions=2)
    assert retime.asked == [["torch", "openvino"]] * 2
    assert [(f.variant, f.looks) for f in outcome.failures] == [("openvino", 3)]


def test_each_variant_counts_its_own_looks():
    """A variant decided on the first look keeps one look, however many another variant needed."""
    retime = Retime({"torch": around(1.0, 30), "openvino": around(1.5)})
    rows = rows_of("resnet18", {"torch": STRADDLING_BELOW, "openvino": around(1.5), "litert": around(1.0)})
    outcome = judge_rows(rows, {"torch": TOP_1_1, "openvino": TOP_1_1, "litert": TOP_1_1}, retime)
    assert retime.asked == [["torch", "openvino"]]
    checked = {line.split()[0]: line for line in outcome.checked}
    assert "looks" not in checked["resnet18-litert"]
    assert "2 looks" in checked["resnet18-torch"] and "2 looks" in checked["resnet18-openvino"]
    assert [(f.variant, f.looks) for f in outcome.failures] == [("openvino", 2)]


def test_a_variant_faster_than_its_band_is_a_notice_not_a_failure():
    outcome = judge_rows(rows_of("resnet18", {"torch": around(1.0)}), {"torch": Band(2.0, 0.1, "own", 5)})
    assert outcome.failures == []
    assert [(n.variant, n.kind) for n in outcome.notices] == [("torch", "faster")]
    assert "faster than stored" in str(outcome.notices[0]) and "update the bands?" in str(outcome.notices[0])
    # A default bound is a ceiling, not a measurement: being far under it says nothing.
    default = judge_rows(rows_of("resnet18", {"torch": around(1.0)}), {"torch": Band(8.0, 0.0, "default bound")})
    assert default.failures == [] and default.notices == []


def test_a_selected_variant_with_a_band_but_no_timing_fails():
    rows = rows_of("resnet18", {"torch": around(2.0)})
    bands = {"torch": Band(2.0, 0.1, "own", 5), "tvm-tuned": Band(1.0, 0.1, "own", 5)}
    outcome = judge_rows(rows, bands, selected=("onnxruntime", "torch", "tvm-tuned"))
    assert [(f.variant, f.kind) for f in outcome.failures] == [("tvm-tuned", "missing")]
    assert str(outcome.failures[0]).startswith("resnet18-tvm-tuned: no timing in this run (build failed or skipped)")
    excused = judge_rows(rows, bands, selected=("onnxruntime", "torch", "tvm-tuned"),
                         excused={"tvm-tuned": "skipped: no tuning log fits"})
    assert excused.failures == []
    assert "resnet18-tvm-tuned not checked (skipped: no tuning log fits)" in excused.unchecked
    # Not selected (--backends onnxruntime,torch): not required.
    assert judge_rows(rows, bands, selected=("onnxruntime", "torch")).failures == []


# --- ONNX Runtime's floor: its share of this CPU's float32 peak --------------------------------------------------


FLOOR = Band(0.6, 0.1, "own", 5)  # floor 0.545


def test_onnxruntime_at_half_its_share_of_the_peak_fails_the_floor():
    retime = Retime({"peak_share": around(0.3)})
    outcome = judge_rows(rows_of("resnet18", {}), {}, retime, floor=FLOOR, floor_shares=around(0.3))
    assert retime.asked == [[]]  # only ONNX Runtime and the peak timed again
    assert [(f.variant, f.kind, f.looks) for f in outcome.failures] == [(REFERENCE_BACKEND, "floor", 2)]
    text = str(outcome.failures[0])
    assert text.startswith("resnet18-onnxruntime: runs at 30% [") and "below its floor 55%" in text


def test_onnxruntime_at_its_usual_share_of_the_peak_passes():
    outcome = judge_rows(rows_of("resnet18", {}), {}, floor=FLOOR, floor_shares=around(0.6))
    assert outcome.failures == [] and outcome.notices == []
    assert outcome.checked == ["resnet18-onnxruntime 60% [59%, 61%] of the peak (≥ 55%, own)"]


def test_onnxruntime_slower_from_outside_fails_the_floor_while_every_ratio_drops(tmp_path):
    file = tmp_path / "ratios.json"
    usual = rows_of("resnet18", {"torch": around(2.0)}, {REFERENCE_BACKEND: shares(0.6)})
    gate.update(file, "znver5-2t-b1", usual, {"threads": 2, "vector_isa": "avx512"})
    data = gate.load_expected(file)

    def judge(key: str, torch: float, share: float) -> gate_decision.GateOutcome:
        expectations = gate.expectations_for(data, key, "resnet18", ("onnxruntime", "torch"), "none", "avx512", 1.8)
        return gate_decision.run_gate("resnet18", rows_of("resnet18", {"torch": around(torch)}), expectations,
                             ("onnxruntime", "torch"), {}, around(share), Retime({"peak_share": around(share)}))

    assert judge("znver5-2t-b1", 2.0, 0.6).failures == []
    # ONNX Runtime 2x slower: torch's ratio halves (a notice), only the floor catches it; here and at another
    # thread count of this CPU.
    for key in ("znver5-2t-b1", "znver5-1t-b1"):
        outcome = judge(key, 1.0, 0.3)
        assert [(f.variant, f.kind) for f in outcome.failures] == [(REFERENCE_BACKEND, "floor")], key
        # "faster than stored" only against this machine's own runs: a borrowed band is wide both ways.
        expected_notices = [("torch", "faster")] if key == "znver5-2t-b1" else []
        assert [(n.variant, n.kind) for n in outcome.notices] == expected_notices, key
    # Another CPU's floor is half its share: it catches a collapse, not a 2x.
    assert gate.expectations_for(data, "znver4-2t-b1", "resnet18", (), "none", "avx512", 1.8).floor.low == \
        pytest.approx(0.6 / gate.OTHER_CPU_FACTOR)
    assert judge("znver4-2t-b1", 1.0, 0.1).failures[0].kind == "floor"


def test_onnxruntime_under_its_floor_while_every_ratio_held_is_the_machine_not_a_failure():
    """A slower ONNX Runtime lowers every ratio alike; its share of the peak alone also falls when the machine runs
    memory-bound work slower (the Zen 5: 38% in a slow CI hour against stored 45-62%, ratios unchanged). The floor
    fails when the ratios fell with it, and is a notice when they held."""
    bands = {"torch": Band(2.0, 0.1, "own", 5), "openvino": Band(1.0, 0.1, "own", 5)}
    held = judge_rows(rows_of("resnet18", {"torch": around(2.0), "openvino": around(1.0)}), bands,
                      Retime({"peak_share": around(0.5)}), floor=FLOOR, floor_shares=around(0.5))
    assert held.failures == []
    assert [(n.variant, n.kind) for n in held.notices] == [(REFERENCE_BACKEND, "floor_held")]
    assert "under its floor 55%, but the other variants' ratios held (typically 1.00x" in str(held.notices[0])
    # ONNX Runtime itself 1.25x slower: the same share, every ratio 0.8 of its stored value: the floor fails.
    slower = judge_rows(rows_of("resnet18", {"torch": around(1.6), "openvino": around(0.8)}), bands,
                        Retime({"peak_share": around(0.5), "torch": around(1.6), "openvino": around(0.8)}),
                        floor=FLOOR, floor_shares=around(0.5))
    assert (REFERENCE_BACKEND, "floor") in [(f.variant, f.kind) for f in slower.failures]
    # One variant slower (its own failure) leaves the typical ratio where it was: the floor is not named with it.
    one = judge_rows(rows_of("resnet18", {"torch": around(3.0), "openvino": around(1.0)}), bands,
                     Retime({"peak_share": around(0.5), "torch": around(3.0)}), floor=FLOOR, floor_shares=around(0.5))
    assert [(f.variant, f.kind) for f in one.failures] == [("torch", "ratio")]


def test_a_floor_without_a_measured_peak_fails():
    outcome = judge_rows(rows_of("resnet18", {}), {}, floor=FLOOR, floor_shares=[])
    assert [(f.variant, f.kind) for f in outcome.failures] == [(REFERENCE_BACKEND, "missing")]
    assert "no share of the peak: the yardstick's peak kernel has no timing" in str(outcome.failures[0])


def test_variants_skipped_for_one_reason_are_said_once_in_the_verdict():
    bf16 = "skipped: this CPU has no native bfloat16 (avx512_bf16 or amx_bf16 missing from /proc/cpuinfo))"
    outcome = gate_decision.GateOutcome(unchecked=[
        f"resnet18-torch-bf16 not checked ({bf16}", "resnet18-tvm-int8 not checked (skipped: tvm has no int8 path)",
        f"resnet18-openvino-bf16 not checked ({bf16}",
        "resnet18-litert not checked (its worker processes ran at 4.80, 2.22 ms: ...)",
        f"resnet18-executorch-bf16 not checked ({bf16}"])
    assert outcome.unchecked_said() == [
        f"resnet18-torch-bf16, resnet18-openvino-bf16 and resnet18-executorch-bf16 not checked ({bf16}",
        "resnet18-tvm-int8 not checked (skipped: tvm has no int8 path)",
        "resnet18-litert not checked (its worker processes ran at 4.80, 2.22 ms: ...)"]
    assert len(outcome.unchecked) == 5  # the outcome itself keeps one entry a variant


def test_a_model_too_small_for_a_flop_floor_says_why_it_is_unchecked():
    tiny = gate.expectations_for({}, "cpu-2t-b1", "tiny", ("onnxruntime", "torch"), "none", "avx2", model_gflop=0.05)
    assert tiny.floor is None and "50 MFLOP a forward pass: too small for a FLOP floor" in tiny.floor_note
    outcome = gate_decision.run_gate("tiny", rows_of("tiny", {"torch": around(2.0)}), tiny, ("onnxruntime", "torch"),
                                     {}, [])
    assert outcome.failures == []
    assert any(line.startswith("tiny-onnxruntime floor not checked (50 MFLOP") for line in outcome.unchecked)
    uncounted = gate.expectations_for({}, "cpu-2t-b1", "tiny", ("onnxruntime",), "none", "avx2", model_gflop=None)
    assert uncounted.floor is None and uncounted.floor_note == "no FLOP count for this model"


def test_a_model_no_machine_stored_gets_the_generic_floor():
    new = gate.expectations_for({}, "cpu-2t-b1", "mobilenet", ("onnxruntime",), "none", "avx2", model_gflop=0.6)
    assert new.floor.low == gate.GENERIC_PEAK_SHARE_FLOOR and new.floor.origin.startswith("generic floor")
    rows = rows_of("mobilenet", {})
    assert gate_decision.run_gate("mobilenet", rows, new, ("onnxruntime",), {}, around(0.3)).failures == []
    collapsed = gate_decision.run_gate("mobilenet", rows, new, ("onnxruntime",), {}, around(0.01))
    assert [(f.variant, f.kind) for f in collapsed.failures] == [(REFERENCE_BACKEND, "floor")]


# --- bands and how they travel ------------------------------------------------------------------------------------


def test_a_band_from_few_runs_is_the_widest():
    band = gate.band_from_runs([1.0, 1.1])
    assert (band.expected, band.margin, band.runs) == (pytest.approx(1.05), gate.MAX_MARGIN, 2)
    assert gate.MIN_RUNS == 3


def test_a_band_from_enough_runs_is_its_spread_times_a_factor_within_limits():
    spread = gate.band_from_runs([1.0, 1.1, 0.95, 1.0, 1.0])  # 10% from the median, 5 runs: x (1.5 + 1.5 / 5)
    assert spread.expected == 1.0 and spread.margin == pytest.approx(0.18)
    assert spread.high == pytest.approx(1.18) and spread.low == pytest.approx(1 / 1.18)
    assert gate.band_from_runs([1.0, 1.02, 0.98, 1.0]).margin == gate.MIN_MARGIN
    assert gate.band_from_runs([1.0, 1.5, 0.8, 1.0]).margin == gate.MAX_MARGIN
    # Fewer runs, a wider factor: the largest of 3 deviations understates the spread more than that of 10.
    assert gate.band_from_runs([1.0, 1.1, 0.95]).margin == pytest.approx(0.2)
    assert gate.band_from_runs([1.0, 1.1, 0.95] + [1.0] * 7).margin == pytest.approx(0.165)


def test_a_variant_whose_runs_happen_to_agree_is_held_to_the_machines_typical_spread():
    # Three runs within 1% say little about the next one when the machine's other variants stray by 12%.
    lucky = [1.0, 1.01, 0.995]
    assert gate.band_from_runs(lucky).margin == gate.MIN_MARGIN
    assert gate.band_from_runs(lucky, typical_spread=0.12).margin == pytest.approx(0.24)
    entry = stored_machine({"torch": [2.0, 2.24, 1.9], "litert": lucky, "openvino": [1.0, 1.12, 0.95]})
    assert gate.machine_spread(entry, "resnet18") == pytest.approx(0.12)
    found = expect({"znver5-2t-b1": entry}, "znver5-2t-b1", ("litert",))
    assert found.ratios["litert"].margin == pytest.approx(0.24)


def test_runs_stored_on_one_day_keep_the_widest_band_until_another_days_join_them():
    # One day is one host: another host of the same CPU name moved ratios by up to 23% and ONNX Runtime's share of the
    # peak by up to 28% (two Zen 3 hosts; cpubench/gate.py, ONE_DAY).
    tight = {"litert": [1.07, 1.064, 1.07]}
    one_day = expect({"znver4-2t-b1": stored_machine(tight, stored_on=["2026-12-07"])}, "znver4-2t-b1", ("litert",))
    assert one_day.ratios["litert"].margin == gate.MAX_MARGIN
    assert "(own, 3 runs stored on one day)" in one_day.ratios["litert"].describe()
    assert one_day.own == {"litert"}  # still its own band
    two_days = expect({"znver4-2t-b1": stored_machine(tight, stored_on=["2026-12-07", "2026-12-09"])}, "znver4-2t-b1",
                      ("litert",))
    assert two_days.ratios["litert"].margin == gate.MIN_MARGIN
    unknown = expect({"znver4-2t-b1": stored_machine(tight)}, "znver4-2t-b1", ("litert",))
    assert unknown.ratios["litert"].margin == gate.MIN_MARGIN  # an entry from before days were kept: as it was


def test_the_committed_zen4_entry_lets_another_hosts_share_of_the_peak_through_and_catches_1_5x():
    # Its three runs, an hour apart, read ONNX Runtime's ResNet18 at 90-91% of the peak. A host 17% lower in that
    # share (as the Zen 3's second host was) must pass; ONNX Runtime made 1.5x slower must not.
    data = gate.load_expected(Path(__file__).resolve().parent.parent / "benches" / "ratios.json")
    stored = data["machines"]["znver4-2t-b1"]["models"]["resnet18"]["peak_share"]["onnxruntime"]["runs"]
    floor = gate.expectations_for(data, "znver4-2t-b1", "resnet18", ("litert",), "avx512_bf16", "avx512", 3.63).floor
    typical = sorted(stored)[1]
    assert floor.low < typical / 1.17
    assert floor.low > typical / 1.5


def test_an_update_keeps_the_days_runs_were_stored_on(tmp_path):
    file = tmp_path / "ratios.json"
    rows = rows_of("resnet18", {"torch": around(2.0)})
    gate.update(file, "cpu-2t-b1", rows, {"threads": 2})
    gate.update(file, "cpu-2t-b1", rows, {"threads": 2})
    entry = json.loads(file.read_text())["machines"]["cpu-2t-b1"]
    assert entry["stored_on"] == [entry["updated"]]  # twice today: one day
    # An entry from before the days were kept counts its last update as one of them.
    data = json.loads(file.read_text())
    del data["machines"]["cpu-2t-b1"]["stored_on"]
    data["machines"]["cpu-2t-b1"]["updated"] = "2026-11-25"
    file.write_text(json.dumps(data))
    lines = gate.update(file, "cpu-2t-b1", rows, {"threads": 2})
    entry = json.loads(file.read_text())["machines"]["cpu-2t-b1"]
    assert entry["stored_on"] == ["2026-11-25", entry["updated"]]
    assert lines[0].endswith("(own, 3 runs)")  # two days: its spread decides, not MAX_MARGIN
    gate.update(file, "one-2t-b1", rows, {"threads": 2})
    gate.update(file, "one-2t-b1", rows, {"threads": 2})
    assert gate.update(file, "one-2t-b1", rows, {"threads": 2})[0].endswith("(own, 3 runs stored on one day)")


def stored_machine(runs: dict[str, list[float]], peak_share: list[float] | None = None, model: str = "resnet18",
                   **info) -> dict:
    """A stored machine entry in the current format."""
    kinds = {"ratios": {variant: {"runs": values} for variant, values in runs.items()}}
    if peak_share:
        kinds["peak_share"] = {REFERENCE_BACKEND: {"runs": peak_share}}
    return {**info, "models": {model: kinds}}


def expect(data, key, variants, bf16_kind="none", vector_isa="avx512", model_gflop=1.8, model="resnet18"):
    return gate.expectations_for({"format": gate.FORMAT, "machines": data}, key, model, variants, bf16_kind,
                                 vector_isa, model_gflop)


def test_another_thread_count_of_the_same_cpu_gets_its_band_widened():
    stored = {"znver5-2t-b1": stored_machine({"tvm-tuned": [1.0, 1.05, 0.95]}, peak_share=[0.6, 0.62, 0.58]),
              "znver5-8t-b1": stored_machine({"tvm-tuned": [3.0, 3.0, 3.0]})}
    own = gate.band_from_runs([1.0, 1.05, 0.95])
    found = expect(stored, "znver5-1t-b1", ("onnxruntime", "tvm-tuned"))
    band = found.ratios["tvm-tuned"]
    assert (band.expected, band.origin, band.runs) == (own.expected, "same CPU at 2 threads", 3)
    assert band.margin == pytest.approx(own.margin + gate.OTHER_THREADS_MARGIN) and found.own == frozenset()
    floor = found.floor
    assert floor.expected == pytest.approx(0.6) and floor.origin == "same CPU at 2 threads"
    assert floor.margin == pytest.approx(gate.band_from_runs([0.6, 0.62, 0.58]).margin + gate.OTHER_THREADS_MARGIN)
    # The nearest thread count; another batch size is another workload and borrows nothing.
    assert expect(stored, "znver5-6t-b1", ("tvm-tuned",)).ratios["tvm-tuned"].origin == "same CPU at 8 threads"
    other_batch = expect(stored, "znver5-2t-b8", ("tvm-tuned",))
    assert other_batch.ratios["tvm-tuned"].origin == "default bound"
    assert other_batch.floor.origin.startswith("generic floor")


def test_the_further_the_thread_count_the_wider_the_band_and_the_lower_the_floor():
    # A 64-core CI machine of a CPU stored at 2 threads: five doublings away. Its ratios are held more loosely, and
    # ONNX Runtime's floor drops with the square root of the thread ratio (batch 1 has only so much parallel work).
    stored = {"znver5-2t-b1": stored_machine({"tvm-tuned": [1.0, 1.05, 0.95]}, peak_share=[0.6, 0.62, 0.58])}
    own_ratio, own_share = gate.band_from_runs([1.0, 1.05, 0.95]), gate.band_from_runs([0.6, 0.62, 0.58])
    for threads, octaves in ((4, 1), (16, 3), (64, 5)):
        found = expect(stored, f"znver5-{threads}t-b1", ("onnxruntime", "tvm-tuned"))
        ratio_margin = own_ratio.margin + gate.OTHER_THREADS_MARGIN * octaves
        assert found.ratios["tvm-tuned"].margin == pytest.approx(ratio_margin)
        floor_margin = (1 + own_share.margin + gate.OTHER_THREADS_MARGIN * octaves) * (threads / 2) ** 0.5 - 1
        assert found.floor.low == pytest.approx(0.6 / (1 + floor_margin))
    # Fewer threads than stored: each core is as busy as before, so the floor is not lowered beyond the margin.
    one = expect(stored, "znver5-1t-b1", ("onnxruntime",))
    assert one.floor.margin == pytest.approx(own_share.margin + gate.OTHER_THREADS_MARGIN)


# A quick run at --threads 1 on the 2-core AMD Zen 3 (docs/gate_znver3.txt), each variant's median ratio to ONNX
# Runtime and ONNX Runtime's share of the 1-thread peak. tvm-tuned is left out: it ran with another tuning log.
ZEN3_ONE_THREAD = {
    "efficientnet_lite0": {"torch": 3.65, "torch-compile": 3.69, "torch-compile-int8": 1.00, "onnxruntime-int8": 5.45,
                           "openvino": 1.03, "openvino-int8": 1.10, "executorch": 1.13, "executorch-int8": 1.36,
                           "litert": 1.05, "litert-int8": 1.21, "tvm": 24.30, "onnxruntime": 0.61},
    "resnet18": {"torch": 1.58, "torch-compile": 1.78, "torch-compile-int8": 0.59, "onnxruntime-int8": 0.74,
                 "openvino": 0.98, "openvino-int8": 0.99, "executorch": 2.48, "executorch-int8": 1.02, "litert": 0.99,
                 "litert-int8": 0.99, "tvm": 50.00, "onnxruntime": 0.84},
}


@pytest.mark.parametrize("model", sorted(ZEN3_ONE_THREAD))
def test_the_zen3_at_one_thread_passes_on_its_stored_two_thread_bands(model):
    # The committed bands, widened for the other thread count, hold an unchanged build measured at 1 thread.
    data = gate.load_expected(Path(__file__).resolve().parent.parent / "benches" / "ratios.json")
    measured = ZEN3_ONE_THREAD[model]
    variants = tuple(measured)
    found = gate.expectations_for(data, "znver3-1t-b1", model, variants, "none", "avx2", {"resnet18": 3.63,
                                  "efficientnet_lite0": 0.77}[model], int8_dot_product=False)
    for variant in variants:
        if variant == REFERENCE_BACKEND:
            assert found.floor.origin == "same CPU at 2 threads" and measured[variant] >= found.floor.low
            continue
        band = found.ratios[variant]
        assert band.origin == "same CPU at 2 threads", (variant, band)
        assert measured[variant] <= band.high, (variant, measured[variant], band.describe())


def test_another_cpu_with_the_same_vector_isa_lends_its_slowest_band_times_a_factor():
    stored = {"znver4-2t-b1": stored_machine({"torch": [2.0]}, peak_share=[0.7], vector_isa="avx512"),
              "icelake-2t-b1": stored_machine({"torch": [4.0]}, peak_share=[0.5], vector_isa="avx512"),
              "skylake-2t-b1": stored_machine({"torch": [10.0]}, peak_share=[0.2], vector_isa="avx2")}
    found = expect(stored, "znver5-2t-b1", ("onnxruntime", "torch", "executorch"))
    torch = found.ratios["torch"]
    assert torch.expected == 4.0 and torch.high == pytest.approx(4.0 * gate.OTHER_CPU_FACTOR)
    assert torch.origin == "other CPUs: icelake-2t-b1, znver4-2t-b1"  # not the AVX2 machine
    assert found.floor.low == pytest.approx(0.5 / gate.OTHER_CPU_FACTOR)  # the lowest share, / the factor
    assert found.ratios["executorch"] == Band(8.0, 0.0, "default bound")
    assert expect(stored, "znver5-2t-b8", ("torch",)).ratios["torch"].origin == "default bound"  # another batch
    avx2 = expect(stored, "haswell-2t-b1", ("torch",), vector_isa="avx2")
    assert avx2.ratios["torch"].expected == 10.0 and avx2.ratios["torch"].origin == "other CPUs: skylake-2t-b1"


def test_other_cpus_bands_catch_a_fallback_to_untuned_code():
    stored = {"znver4-2t-b1": stored_machine({"tvm-tuned": [0.98]})}
    bands = expect(stored, "rocketlake-2t-b1", ("onnxruntime", "tvm-tuned"), model_gflop=None).ratios
    transferred_log = rows_of("resnet18", {"tvm-tuned": around(1.5)})  # 1.5x: a log from another CPU
    assert judge_rows(transferred_log, bands).failures == []
    fallback = rows_of("resnet18", {"tvm-tuned": around(5.0)})
    assert [(f.variant, f.kind) for f in judge_rows(fallback, bands).failures] == [("tvm-tuned", "ratio")]


def test_bf16_bands_travel_only_between_cpus_with_the_same_bf16_hardware(tmp_path):
    file = tmp_path / "ratios.json"
    amx_rows = rows_of("resnet18", {"openvino": around(1.0), "openvino-bf16": around(0.2)})
    gate.update(file, "sapphirerapids-2t-b1", amx_rows, {"threads": 2, "bf16_class": "amx", "vector_isa": "avx512"})
    amx = bands_from(file, "graniterapids-2t-b1", ("openvino-bf16",), bf16_kind="amx", vector_isa="avx512")
    assert amx.ratios["openvino-bf16"].expected == pytest.approx(0.2)
    assert amx.ratios["openvino-bf16"].origin == "other CPUs: sapphirerapids-2t-b1"
    no_amx = bands_from(file, "znver4-2t-b1", ("openvino-bf16",), bf16_kind="avx512_bf16", vector_isa="avx512")
    assert no_amx.ratios["openvino-bf16"].expected == pytest.approx(1.0)  # its backend's fp32 band
    assert no_amx.ratios["openvino-bf16"].origin == "openvino's fp32 band (other CPUs: sapphirerapids-2t-b1)"


def test_a_model_no_machine_knows_gets_default_bounds():
    bounds = gate.expectations_for({"machines": {}}, "rocketlake-2t-b1", "mobilenet",
                                   ("onnxruntime", "torch", "tvm-tuned"), "none", "avx2", None)
    assert bounds.ratios == {"torch": Band(8.0, 0.0, "default bound"), "tvm-tuned": Band(3.0, 0.0, "default bound")}
    outcome = gate_decision.run_gate("mobilenet", rows_of("mobilenet", {}), bounds, ("onnxruntime", "tvm-tuned"),
                            {"tvm-tuned": "skipped: no tuning log fits"}, [])
    assert outcome.failures == [] and outcome.checked == []  # nothing compared: the gate test then fails
    assert outcome.unchecked == ["mobilenet-tvm-tuned not checked (skipped: no tuning log fits)",
                                 "mobilenet-onnxruntime floor not checked (no FLOP count for this model)"]


# --- float32 above the physical peak ------------------------------------------------------------------------------


def implausible(rows) -> list[tuple[str, str]]:
    bands = {r.variant: Band(8.0, 0.0, "default bound") for r in rows if r.variant != REFERENCE_BACKEND}
    return [(f.variant, f.kind) for f in judge_rows(rows, bands).failures]


def test_an_fp32_variant_faster_than_the_cpu_can_compute_fails():
    rows = rows_of("resnet18", {"openvino": around(0.3)},
                   {REFERENCE_BACKEND: shares(0.6), "openvino": shares(2.0)})
    assert implausible(rows) == [("openvino", "implausible")]
    failure = judge_rows(rows, {"openvino": Band(8.0, 0.0, "default bound")}).failures[0]
    assert "implausible for float32 (at most 100%): it ran in lower precision or skipped work" in str(failure)
    bf16 = rows_of("resnet18", {"openvino-bf16": around(0.3)},
                   {REFERENCE_BACKEND: shares(0.6), "openvino-bf16": shares(2.0, precision="bf16")})
    assert implausible(bf16) == []  # bf16 may run above the float32 peak


def test_a_peak_slowed_by_another_load_makes_nothing_implausible():
    # Another process on the machine slows the peak kernel's rounds (two threads in lockstep) more than a model's,
    # so paired shares rise above 100%; against the peak's fastest rounds the variant is where it always was.
    contaminated = rows_of("resnet18", {"litert": around(1.0)},
                           {REFERENCE_BACKEND: shares(0.6), "litert": shares(1.27, best_peak_share=0.8)})
    assert implausible(contaminated) == []
    cheating = rows_of("resnet18", {"litert": around(0.3)},
                       {REFERENCE_BACKEND: shares(0.6), "litert": shares(0.9, best_peak_share=2.4)})
    assert implausible(cheating) == [("litert", "implausible")]


def test_a_convolution_that_skips_padded_taps_is_allowed_what_they_cost_and_no_more():
    # OpenVINO's ResNet18 at one thread on a Zen 4 read 100.4% of the peak kernel's fastest rounds with direct
    # (brgemm) convolutions: 7.4% of the counted FLOPs fall on padding, which they skip.
    for share, expected in ((1.004, []), (1.07, []), (1.2, [("openvino", "implausible")])):
        rows = rows_of("resnet18", {"openvino": around(0.9)},
                       {REFERENCE_BACKEND: shares(0.6),
                        "openvino": shares(0.9, best_peak_share=share, padding_allowance=1.08)})
        assert implausible(rows) == expected, share
    assert gate_decision.implausible_ceiling(rows[1]) == pytest.approx(1.08)
    both = BenchRow("m", "tvm-tuned", 1, None, {"tvm_lowering": "winograd", "winograd_allowance": 2.0,
                                                "padding_allowance": 1.1})
    assert gate_decision.implausible_ceiling(both) == pytest.approx(2.2)


def test_winograd_is_allowed_what_it_saves_and_no_more_and_direct_builds_nothing():
    allowance = {"winograd_allowance": 2.25}
    for share, lowering, expected in ((2.0, "winograd", []), (3.0, "winograd", [("tvm-tuned", "implausible")]),
                                      (2.0, "direct", [("tvm-tuned", "implausible")]),
                                      (0.9, "direct", [])):
        rows = rows_of("resnet18", {"tvm-tuned": around(0.5)},
                       {REFERENCE_BACKEND: shares(0.6), "tvm-tuned": shares(share, tvm_lowering=lowering, **allowance)})
        assert implausible(rows) == expected, (share, lowering)
    assert gate_decision.implausible_ceiling(rows[1]) == 1.0
    winograd = BenchRow("m", "tvm-tuned", 1, None, {"tvm_lowering": "winograd", **allowance})
    assert gate_decision.implausible_ceiling(winograd) == 2.25
    assert gate_decision.implausible_ceiling(BenchRow("m", "tvm-tuned", 1, None, {"tvm_lowering": "winograd"})) == 1.0


# --- storing: what --gate-update merges --------------------------------------------------------------------------


def stored_runs(path, key="cpu-2t-b1") -> dict:
    return json.loads(path.read_text())["machines"][key]["models"]


def test_an_update_keeps_what_this_run_did_not_measure(tmp_path):
    file = tmp_path / "ratios.json"
    first = [*rows_of("resnet18", {"torch": around(2.0), "openvino-int8": around(0.3)},
                      {REFERENCE_BACKEND: shares(0.6), "openvino-int8": {"precision": "int8"}}),
             *rows_of("efficientnet_lite0", {"torch": around(5.0)})]
    gate.update(file, "cpu-2t-b1", first, {"threads": 2})
    gate.update(file, "other-2t-b1", first, {"threads": 2})
    fp32_only = rows_of("resnet18", {"torch": around(2.2)}, {REFERENCE_BACKEND: shares(0.62)})
    gate.update(file, "cpu-2t-b1", fp32_only, {"threads": 2})
    models = stored_runs(file)
    assert models["resnet18"]["ratios"]["torch"]["runs"] == [2.0, 2.2]
    assert models["resnet18"]["ratios"]["openvino-int8"]["runs"] == [0.3]  # int8 not in this run: kept
    assert models["resnet18"]["peak_share"]["onnxruntime"]["runs"] == [0.6, 0.62]
    assert models["efficientnet_lite0"]["ratios"]["torch"]["runs"] == [5.0]  # another model: kept
    assert stored_runs(file, "other-2t-b1")["resnet18"]["ratios"]["torch"]["runs"] == [2.0]  # another machine
    assert json.loads(file.read_text())["format"] == gate.FORMAT


def test_an_update_keeps_the_newest_runs_only(tmp_path):
    file = tmp_path / "ratios.json"
    for i in range(gate.MAX_RUNS + 2):
        gate.update(file, "cpu-2t-b1", rows_of("resnet18", {"torch": around(2.0 + i / 100)}), {"threads": 2})
    runs = stored_runs(file)["resnet18"]["ratios"]["torch"]["runs"]
    assert runs == [round(2.0 + i / 100, 4) for i in range(2, gate.MAX_RUNS + 2)]


def test_an_update_says_old_and_new_bands(tmp_path):
    file = tmp_path / "ratios.json"
    rows = rows_of("resnet18", {"torch": around(2.0)}, {REFERENCE_BACKEND: shares(0.6)})
    first = gate.update(file, "cpu-2t-b1", rows, {"threads": 2})
    assert first == ["resnet18-torch (x onnxruntime): none -> [1.54, 2.6] (own, 1 runs)",
                     "resnet18-onnxruntime (share of the peak): none -> [0.462, 0.78] (own, 1 runs)"]
    second = gate.update(file, "cpu-2t-b1", rows, {"threads": 2})
    assert second[0] == "resnet18-torch (x onnxruntime): [1.54, 2.6] (own, 1 runs) -> [1.54, 2.6] (own, 2 runs)"


def test_an_update_with_nothing_to_store_is_refused(tmp_path):
    file = tmp_path / "ratios.json"
    with pytest.raises(UsageError, match="no ratio to store"):
        gate.update(file, "cpu-2t-b1", rows_of("resnet18", {}), {"threads": 2})
    assert not file.exists()


FORMAT_1 = {"machines": {"znver4-2t-b1": {
    "cpu_name": "AMD Ryzen", "threads": 2, "bf16_class": "avx512_bf16",
    "ratios": {"resnet18": {"torch": {"expected": 2.0, "max": 3.2}, "tvm-tuned": {"expected": 0.98, "max": 1.57}}},
    "efficiency": {"resnet18": {"onnxruntime": {"expected": 1.0, "min": 0.71}}}}}}


def test_an_old_format_file_loads_its_ratios_as_single_runs(tmp_path):
    file = tmp_path / "ratios.json"
    file.write_text(json.dumps(FORMAT_1))
    data = gate.load_expected(file)
    entry = data["machines"]["znver4-2t-b1"]
    assert data["format"] == gate.FORMAT and "ratios" not in entry and "efficiency" not in entry
    assert entry["cpu_name"] == "AMD Ryzen" and entry["bf16_class"] == "avx512_bf16"
    assert entry["models"]["resnet18"]["ratios"]["torch"] == {"runs": [2.0]}
    found = gate.expectations_for(data, "znver4-2t-b1", "resnet18", ("onnxruntime", "torch"), "none", "avx512", 1.8)
    assert found.ratios["torch"] == Band(2.0, gate.MAX_MARGIN, "own", 1) and found.own == frozenset({"torch"})
    assert found.floor.origin.startswith("generic floor")  # its efficiency was against numpy's GEMM: dropped
    # An update rewrites it in the current format, the old ratio kept as the first run.
    gate.update(file, "znver4-2t-b1", rows_of("resnet18", {"torch": around(2.1)}), {"threads": 2})
    assert json.loads(file.read_text())["format"] == gate.FORMAT
    assert stored_runs(file, "znver4-2t-b1")["resnet18"]["ratios"]["torch"]["runs"] == [2.0, 2.1]
    assert stored_runs(file, "znver4-2t-b1")["resnet18"]["ratios"]["tvm-tuned"]["runs"] == [0.98]


def test_gate_file_must_be_json(tmp_path):
    bad = tmp_path / "ratios.json"
    bad.write_text("{oops")
    with pytest.raises(UsageError, match=str(bad)):
        gate.load_expected(bad)


def test_a_gate_file_with_a_machine_that_is_not_an_object_is_named(tmp_path):
    file = tmp_path / "ratios.json"
    file.write_text(json.dumps({"format": gate.FORMAT, "machines": {"cpu-2t-b1": [1, 2]}}))
    with pytest.raises(UsageError, match=r"ratios.json: machine 'cpu-2t-b1' should be an object"):
        gate.load_expected(file)
    assert gate.load_expected(tmp_path / "missing.json") == {"format": gate.FORMAT, "machines": {}}


# --- --gate-update in the plugin ----------------------------------------------------------------------------------


class Reporter:
    def __init__(self, **stats) -> None:
        self.stats, self.lines = stats, []

    def write_line(self, line: str, **markup) -> None:
        self.lines.append((line, markup))


def update_suite(path):
    settings = SimpleNamespace(gate_file=path, threads=2, batch_size=1)
    return SimpleNamespace(settings=settings, results=rows_of("resnet18", {"torch": around(2.0)}))


@pytest.mark.parametrize(("stats", "exitstatus", "says"), [
    ({"failed": ["test_inference[resnet18-torch]"]}, 1, "1 test(s) failed"),
    ({"error": ["setup"], "failed": ["a", "b"]}, 1, "3 test(s) failed"),
    ({}, pytest.ExitCode.INTERRUPTED, "some test(s) failed"),
])
def test_gate_update_refuses_a_run_with_a_failed_test(tmp_path, stats, exitstatus, says):
    from cpubench.plugin import store_bands

    file = tmp_path / "ratios.json"
    reporter = Reporter(**stats)
    store_bands(update_suite(file), reporter, exitstatus)
    assert reporter.lines == [(f"--gate-update refused: {says} in this run; nothing stored in {file}", {"red": True})]
    assert not file.exists()


def test_gate_update_stores_a_clean_run_and_prints_old_and_new(tmp_path, monkeypatch):
    from cpubench import machine, plugin

    monkeypatch.setattr(plugin, "machine_summary", lambda: {"cpu_name": "Made-up CPU"})
    monkeypatch.setattr(machine, "gate_key", lambda threads, batch: f"madeup-{threads}t-b{batch}")
    monkeypatch.setattr(machine, "llvm_cpu", lambda: "madeup")
    monkeypatch.setattr(machine, "bf16_class", lambda: "none")
    monkeypatch.setattr(machine, "host_profile", lambda: SimpleNamespace(vector_isa="avx2"))
    file = tmp_path / "ratios.json"
    reporter = Reporter(passed=["x"])
    plugin.store_bands(update_suite(file), reporter, pytest.ExitCode.OK)
    assert [line for line, _ in reporter.lines] == [
        f"bands for madeup-2t-b1 updated in {file} (old -> new):",
        "  resnet18-torch (x onnxruntime): none -> [1.54, 2.6] (own, 1 runs)"]
    entry = json.loads(file.read_text())["machines"]["madeup-2t-b1"]
    assert (entry["cpu_name"], entry["llvm_cpu"], entry["vector_isa"], entry["bf16_class"]) == \
        ("Made-up CPU", "madeup", "avx2", "none")
    assert entry["models"]["resnet18"]["ratios"]["torch"]["runs"] == [2.0]


# --- the wiring: judge() times undecided variants again through the session ---------------------------------------


class FakeSuite:
    """What gate.judge reads of a session, with rotations made up: ONNX Runtime at 10 ms, the peak kernel at a
    share of 50% for a 1.8 GFLOP model, torch at the given ratios; `retime` answers with `more`."""

    PEAK_FLOPS = 10**8

    def __init__(self, torch_ratios: list[float], more: list[float]) -> None:
        from cpubench.yardstick import PEAK

        self.settings = SimpleNamespace(threads=2, batch_size=1, variants=("onnxruntime", "torch"))
        self.results = rows_of("resnet18", {"torch": torch_ratios})
        self.peak_seconds = 0.5 * REFERENCE_SECONDS * self.PEAK_FLOPS / 1.8e9  # a share of 0.5
        self.peak_rounds = {PEAK: dict.fromkeys(range(len(torch_ratios)), self.peak_seconds)}
        self.more, self.asked = more, []
        self.store = self.launcher = self.measurement = self  # the fake plays each of the session's parts

    def flops(self, model):
        return 1.8e9

    def yardstick_kernels(self):
        from cpubench.yardstick import PEAK

        return {PEAK: {"flops_per_call": self.PEAK_FLOPS, "kernel": "made up"}}

    def yardstick_rounds(self, model):
        return self.peak_rounds

    def build_outcome(self, model, variant):
        return "built", ""

    def retime(self, model, variants, seconds_per_variant):
        from cpubench.schedule import Schedule, VariantRounds
        from cpubench.yardstick import PEAK

        self.asked.append((model, list(variants), seconds_per_variant))
        count = len(self.more)
        rounds = {REFERENCE_BACKEND: VariantRounds({r: [REFERENCE_SECONDS] for r in range(count)}),
                  "torch": VariantRounds({r: [REFERENCE_SECONDS * v] for r, v in enumerate(self.more)}),
                  PEAK: VariantRounds({r: [self.peak_seconds] for r in range(count)})}
        return Schedule(rounds, count, 0.05, 1.0)


@pytest.fixture
def this_machine(monkeypatch):
    from cpubench import machine

    monkeypatch.setattr(machine, "gate_key", lambda threads, batch: f"madeup-{threads}t-b{batch}")
    monkeypatch.setattr(machine, "bf16_class", lambda: "none")
    monkeypatch.setattr(machine, "host_profile", lambda: SimpleNamespace(vector_isa="avx2"))
    # Stored for this machine: torch at most 1.08x ONNX Runtime, ONNX Runtime at least 46% of the peak.
    entry = stored_machine({"torch": [1.0] * 3}, peak_share=[0.5] * 3)
    return {"format": gate.FORMAT, "machines": {"madeup-2t-b1": entry}}


@pytest.mark.parametrize(("more", "failed"), [(around(1.0, 30), []), (around(1.5, 30), [("torch", "ratio", 2)])])
def test_judge_times_undecided_variants_again_beside_onnxruntime_and_the_peak(this_machine, more, failed):
    suite = FakeSuite([1.0, 1.2] * 5, more)  # median 1.1: straddles the top, 1.08
    outcome, note = gate_judge.judge(suite, "resnet18", this_machine)
    assert suite.asked == [("resnet18", ["onnxruntime", "torch"], gate_decision.EXTENSION_SECONDS)]
    assert [(f.variant, f.kind, f.looks) for f in outcome.failures] == failed
    assert note == "bands for madeup-2t-b1: own"
    assert any(line.startswith("resnet18-onnxruntime 50% [50%, 50%] of the peak (≥ 45%, own)")
               for line in outcome.checked), outcome.checked


# --- CPUBENCH_SLOWDOWN: the fault injection that proves the gate -------------------------------------------------


def test_slowdown_names_a_variant_or_a_model_variant():
    from cpubench.worker_process import injected_slowdown

    text = "onnxruntime=1.5, resnet18-openvino=2"
    assert injected_slowdown("resnet18", "onnxruntime", text) == 1.5
    assert injected_slowdown("efficientnet_lite0", "onnxruntime", text) == 1.5
    assert injected_slowdown("resnet18", "openvino", text) == 2.0
    assert injected_slowdown("efficientnet_lite0", "openvino", text) == 1.0  # another model
    assert injected_slowdown("resnet18", "openvino-bf16", text) == 1.0  # another variant of the backend
    assert injected_slowdown("resnet18", "onnxruntime", "") == 1.0


def test_slowdown_is_read_from_the_environment(monkeypatch):
    from cpubench.worker_process import SLOWDOWN_VARIABLE, injected_slowdown

    assert SLOWDOWN_VARIABLE == "CPUBENCH_SLOWDOWN"
    monkeypatch.setenv(SLOWDOWN_VARIABLE, "torch=1.25")
    assert injected_slowdown("resnet18", "torch") == 1.25
    monkeypatch.delenv(SLOWDOWN_VARIABLE)
    assert injected_slowdown("resnet18", "torch") == 1.0


@pytest.mark.parametrize("text", ["onnxruntime", "onnxruntime=fast", "=2", "onnxruntime=0.5", "torch=2,openvino"])
def test_a_malformed_slowdown_is_a_usage_error_naming_the_variable(text):
    from cpubench.worker_process import injected_slowdown

    with pytest.raises(UsageError, match="CPUBENCH_SLOWDOWN: expected VARIANT=FACTOR"):
        injected_slowdown("resnet18", "onnxruntime", text)


class CountingBackend:
    def __init__(self) -> None:
        self.calls = 0

    def forward(self, inputs):
        self.calls += 1
        return inputs


@pytest.mark.parametrize(("slowdown", "extra_per_call"), [(1.0, 0.0), (2.0, 1.0), (1.5, 0.5)])
def test_a_slowed_variant_does_its_extra_work_inside_each_timed_call(slowdown, extra_per_call):
    from cpubench.worker_process import _Variant

    variant = _Variant()
    variant.backend, variant.slowdown = CountingBackend(), slowdown
    times = variant.round(0.002, 0.0)
    assert len(times) >= 1
    assert variant.backend.calls == len(times) + int(len(times) * extra_per_call)


def test_a_variant_whose_processes_ran_far_apart_is_named_unchecked_not_failed():
    """litert-int8 on the Zen 5, one CI run: its two processes at 4.80 and 2.22 ms. A slower build slows every process
    alike (then the variant is judged, and fails); one slow process is its placement: named, not judged."""
    bands = {"litert-int8": Band(0.957, 0.3, "own", 3), "openvino": Band(1.0, 0.1, "own", 5)}
    split = judge_rows(rows_of("resnet18", {"litert-int8": around(1.34), "openvino": around(1.0)},
                               {"litert-int8": {"process_medians_ms": [4.80, 2.22]}}), bands)
    assert split.failures == []
    assert any(line.startswith("resnet18-litert-int8 not checked (its worker processes ran at 4.80, 2.22 ms")
               for line in split.unchecked), split.unchecked
    together = judge_rows(rows_of("resnet18", {"litert-int8": around(1.34), "openvino": around(1.0)},
                                  {"litert-int8": {"process_medians_ms": [4.80, 4.61]}}), bands)
    assert [(f.variant, f.kind) for f in together.failures] == [("litert-int8", "ratio")]
