"""The report table, the chart and the ratio gate, on made-up rows (no timing needed)."""

from __future__ import annotations

import json

import pytest

from cpubench import gate
from cpubench.chart import write_chart
from cpubench.errors import UsageError
from cpubench.report import table_lines
from cpubench.results import BenchRow, ratios
from cpubench.stats import percentile_stats


def row(model, backend, median_ms, top1=285):
    timing = percentile_stats([median_ms / 1e3 * f for f in (0.95, 1.0, 1.0, 1.05, 1.3)], 1)
    return BenchRow(model, backend, top1, timing, {"threads": 2, "batch_size": 1})


ROWS = [row("resnet18", "torch", 16.0), row("resnet18", "onnxruntime", 8.0), row("resnet18", "tvm", 1600.0),
        row("resnet18", "tvm-tuned", 12.0), row("efficientnet_lite0", "torch", 20.0),
        row("efficientnet_lite0", "onnxruntime", 4.0)]


def test_percentiles_and_throughput():
    stats = percentile_stats([0.001 * i for i in range(1, 101)], batch_size=4)
    assert stats["p50"] == pytest.approx(0.0505) and stats["p90"] == pytest.approx(0.0901)
    assert stats["p99"] == pytest.approx(0.09901) and stats["ips"] == pytest.approx(4 / 0.0505)


def test_ratios_are_within_one_model():
    found = ratios(ROWS, "onnxruntime")
    assert found[("resnet18", "tvm-tuned")] == pytest.approx(1.5)
    assert found[("efficientnet_lite0", "torch")] == pytest.approx(5.0)
    assert ("efficientnet_lite0", "tvm") not in found


def test_table_has_speedup_ratio_and_class_name():
    text = "\n".join(table_lines(ROWS))
    assert "### resnet18" in text and "### efficientnet_lite0" in text
    assert "| tvm-tuned | fp32 | 12.00 |" in text and "| 1.50 [1.50, 1.50] | — | 1.33× | 285 Egyptian cat |" in text


def test_verdict_line_names_the_fastest_and_its_margins():
    rows = [*ROWS, BenchRow("resnet18", "openvino-bf16", 285, percentile_stats([0.002] * 5, 1),
                            {"precision": "bf16"})]
    text = "\n".join(table_lines(rows))
    assert ("**resnet18: fastest is openvino-bf16 in bf16, 2.00 ms median**; 4.00× ahead of onnxruntime (8.00 ms), "
            "4.00× faster than onnxruntime fp32.") not in text  # the runner-up is onnxruntime itself here
    assert ("**resnet18: fastest is openvino-bf16 in bf16, 2.00 ms median**; 4.00× [4.00, 4.00] ahead of "
            "onnxruntime (8.00 ms).") in text
    assert "**efficientnet_lite0: fastest is onnxruntime in fp32, 4.00 ms median**; 5.00× [5.00, 5.00] ahead of " \
        "torch" in text


def test_verdict_says_tied_when_the_interval_reaches_one():
    rounds_a = {r: 0.010 * (1.02 if r % 2 else 0.99) for r in range(10)}
    rounds_b = {r: 0.010 * (0.99 if r % 2 else 1.02) for r in range(10)}
    rows = [BenchRow("m", "onnxruntime", 1, percentile_stats(list(rounds_a.values()), 1), rounds=rounds_a),
            BenchRow("m", "litert", 1, percentile_stats(list(rounds_b.values()), 1), rounds=rounds_b)]
    text = "\n".join(table_lines(rows))
    assert "**m: tied for fastest:" in text and "their intervals overlap" in text
    assert "fastest is" not in text


def test_chart_is_a_png(tmp_path):
    path = write_chart(ROWS, tmp_path / "latency.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gate_passes_on_expected_and_names_a_2x_regression(tmp_path):
    file = tmp_path / "ratios.json"
    gate.update(file, "cpu-2t-b1", ROWS, {"threads": 2})
    expected = json.loads(file.read_text())["machines"]["cpu-2t-b1"]["ratios"]
    outcome = gate.check(ROWS, expected)
    assert not outcome.violations and len(outcome.checked) == 4
    slower = [row("resnet18", "tvm-tuned", 24.0) if r.backend == "tvm-tuned" else r for r in ROWS]
    violations = gate.check(slower, expected).violations
    assert [(v.model, v.backend) for v in violations] == [("resnet18", "tvm-tuned")]
    assert "resnet18 tvm-tuned: median is 3.00x onnxruntime's, allowed at most 2.40x" in str(violations[0])


def test_gate_fails_when_a_selected_backend_has_no_timing(tmp_path):
    file = tmp_path / "ratios.json"
    gate.update(file, "cpu-2t-b1", ROWS, {"threads": 2})
    expected = json.loads(file.read_text())["machines"]["cpu-2t-b1"]["ratios"]
    without_tuned = [r for r in ROWS if r.backend != "tvm-tuned"]
    violations = gate.check(without_tuned, expected, ("torch", "onnxruntime", "tvm", "tvm-tuned")).violations
    assert [str(v).split(":")[0] for v in violations] == ["resnet18 tvm-tuned"]
    assert "no timing in this run" in str(violations[0])
    # Not selected (--backends torch,onnxruntime): not required.
    assert gate.check(without_tuned, expected, ("torch", "onnxruntime")).violations == []


def test_gate_tolerates_noise_within_its_slack():
    expected = {"resnet18": {"torch": {"expected": 2.0, "max": 2.0 * gate.SLACK}}}
    noisy = [row("resnet18", "torch", 16.0 * 1.3), row("resnet18", "onnxruntime", 8.0)]
    assert gate.check(noisy, expected).violations == []


def test_gate_file_must_be_json(tmp_path):
    bad = tmp_path / "ratios.json"
    bad.write_text("{oops")
    with pytest.raises(UsageError, match=str(bad)):
        gate.load_expected(bad)


def test_a_machine_without_an_entry_gets_portable_bounds(tmp_path):
    file = tmp_path / "ratios.json"
    gate.update(file, "znver4-2t-b1", ROWS, {"threads": 2})
    slower_cpu = [row("resnet18", "torch", 16.0), row("resnet18", "onnxruntime", 4.0),
                  row("resnet18", "tvm-tuned", 12.0), row("resnet18", "tvm", 1600.0)]
    gate.update(file, "icelake-2t-b1", slower_cpu, {"threads": 2})
    data = gate.load_expected(file)
    own = gate.expectations_for(data, "znver4-2t-b1", "resnet18")
    assert "tvm-tuned" in own.own and own.ratios["tvm-tuned"]["expected"] == pytest.approx(1.5)
    portable = gate.expectations_for(data, "znver5-2t-b1", "resnet18", ("torch", "tvm-tuned", "executorch"))
    assert not portable.own and "portable bounds" in portable.source
    assert "default bounds: executorch <= 8x" in portable.source
    assert "icelake-2t-b1, znver4-2t-b1" in portable.source
    # The largest expected ratio of any stored machine, with the portable slack.
    assert portable.ratios["tvm-tuned"] == {"expected": pytest.approx(3.0), "max": pytest.approx(6.0)}
    assert portable.ratios["torch"]["max"] == pytest.approx(4.0 * gate.PORTABLE_SLACK)
    # Another batch size is another workload: its bounds come from machines with that batch size only.
    assert "default bounds" in gate.expectations_for(data, "znver5-2t-b8", "resnet18", ("torch",)).source


def test_portable_bounds_catch_a_fallback_to_untuned_code():
    data = {"machines": {"znver4-2t-b1": {"ratios": {"resnet18": {"tvm-tuned": {"expected": 0.98, "max": 1.57}}}}}}
    bounds = gate.expectations_for(data, "rocketlake-2t-b1", "resnet18", ("onnxruntime", "tvm-tuned"))
    fine = [row("resnet18", "onnxruntime", 10.0), row("resnet18", "tvm-tuned", 15.0)]  # a transferred log: 1.5x
    assert gate.check(fine, {"resnet18": bounds.ratios}, ("onnxruntime", "tvm-tuned")).violations == []
    fallback = [row("resnet18", "onnxruntime", 10.0), row("resnet18", "tvm-tuned", 75.0)]  # 5x slower
    violations = gate.check(fallback, {"resnet18": bounds.ratios}, ("onnxruntime", "tvm-tuned")).violations
    assert [(v.model, v.backend) for v in violations] == [("resnet18", "tvm-tuned")]


def test_a_model_no_machine_knows_gets_default_bounds():
    bounds = gate.expectations_for({"machines": {}}, "rocketlake-2t-b1", "mobilenet", ("torch", "tvm-tuned"))
    assert "default bounds" in bounds.source and set(bounds.ratios) == {"torch", "tvm-tuned"}
    unavailable = [row("mobilenet", "onnxruntime", 10.0)]
    outcome = gate.check(unavailable, {"mobilenet": bounds.ratios}, ("onnxruntime", "tvm-tuned"),
                         {"tvm-tuned": "skipped: no tuning log fits"})
    assert outcome.violations == [] and outcome.checked == []  # nothing compared: the gate test then fails
    assert outcome.unchecked == ["mobilenet-tvm-tuned not checked (skipped: no tuning log fits)"]


def efficiency_row(backend, median_ms, share, model="resnet18"):
    r = row(model, backend, median_ms)
    r.context.update({"efficiency": share, "efficiency_low": share * 0.97, "efficiency_high": share * 1.03})
    return r


def test_gate_holds_onnxruntime_to_its_share_of_the_gemm_rate(tmp_path):
    file = tmp_path / "ratios.json"
    rows = [efficiency_row("onnxruntime", 10.0, 1.0), efficiency_row("torch", 20.0, 0.5)]
    gate.update(file, "cpu-2t-b1", rows, {"threads": 2, "bf16_class": "amx"})
    data = gate.load_expected(file)
    own = gate.expectations_for(data, "cpu-2t-b1", "resnet18", ("onnxruntime", "torch"), bf16_kind="amx")
    assert own.efficiency == {"expected": 1.0, "min": pytest.approx(1.0 / gate.EFFICIENCY_SLACK, abs=1e-3)}
    ok = gate.check(rows, {"resnet18": own.ratios}, ("onnxruntime", "torch"), efficiency={"resnet18": own.efficiency})
    assert ok.violations == [] and any("of the GEMM rate" in line for line in ok.checked)
    # ONNX Runtime (or its export) 2x slower, everything else with it: every ratio holds, the efficiency fails.
    slow = [efficiency_row("onnxruntime", 20.0, 0.5), efficiency_row("torch", 40.0, 0.25)]
    failed = gate.check(slow, {"resnet18": own.ratios}, ("onnxruntime", "torch"),
                        efficiency={"resnet18": own.efficiency}).violations
    assert [(v.backend, v.kind) for v in failed] == [("onnxruntime", "efficiency")]
    assert "resnet18 onnxruntime: runs at 50% of this CPU's fp32 GEMM rate" in str(failed[0])
    # Another machine (same threads and batch) gets a portable floor that still fails a 2x slowdown.
    portable = gate.expectations_for(data, "other-2t-b1", "resnet18", ("onnxruntime",), bf16_kind="none")
    assert portable.efficiency["min"] > 0.5
    assert gate.expectations_for(data, "other-4t-b1", "resnet18", ("onnxruntime",)).efficiency is None


def test_gate_fails_an_fp32_variant_faster_than_the_cpu_can_compute():
    rows = [efficiency_row("onnxruntime", 10.0, 1.0), efficiency_row("openvino", 2.0, 5.0)]
    bands = gate.expectations_for({"machines": {}}, "cpu-2t-b1", "resnet18", ("openvino",)).ratios
    violations = gate.check(rows, {"resnet18": bands}, ("onnxruntime", "openvino")).violations
    assert [(v.backend, v.kind) for v in violations] == [("openvino", "implausible")]
    assert "it ran in lower precision or skipped work" in str(violations[0])
    bf16 = [efficiency_row("onnxruntime", 10.0, 1.0), efficiency_row("openvino-bf16", 2.0, 5.0)]
    assert gate.check(bf16, {"resnet18": bands}, ("onnxruntime", "openvino-bf16")).violations == []
    # A Winograd build does fewer multiplications than the model's count: 2x the rate is plausible, 8x is not.
    tuned = gate.expectations_for({"machines": {}}, "cpu-2t-b1", "resnet18", ("tvm-tuned",)).ratios
    for share, kinds in ((2.0, []), (8.0, [("tvm-tuned", "implausible")])):
        winograd_row = efficiency_row("tvm-tuned", 10.0 / share, share)
        winograd_row.context["tvm_lowering"] = "winograd"
        found = gate.check([rows[0], winograd_row], {"resnet18": tuned}, ("onnxruntime", "tvm-tuned")).violations
        assert [(v.backend, v.kind) for v in found] == kinds, share
    direct_row = efficiency_row("tvm-tuned", 5.0, 2.0)
    found = gate.check([rows[0], direct_row], {"resnet18": tuned}, ("onnxruntime", "tvm-tuned")).violations
    assert [(v.backend, v.kind) for v in found] == [("tvm-tuned", "implausible")]


def test_bf16_bands_travel_only_between_cpus_with_the_same_bf16_hardware(tmp_path):
    file = tmp_path / "ratios.json"
    amx_rows = [row("resnet18", "onnxruntime", 10.0), row("resnet18", "openvino", 10.0),
                row("resnet18", "openvino-bf16", 2.0)]
    gate.update(file, "xeon-2t-b1", amx_rows, {"threads": 2, "bf16_class": "amx"})
    data = gate.load_expected(file)
    amx = gate.expectations_for(data, "other-2t-b1", "resnet18", ("openvino-bf16",), bf16_kind="amx")
    assert amx.ratios["openvino-bf16"]["expected"] == pytest.approx(0.2)
    no_amx = gate.expectations_for(data, "zen4-2t-b1", "resnet18", ("openvino-bf16",), bf16_kind="avx512_bf16")
    assert no_amx.ratios["openvino-bf16"]["expected"] == pytest.approx(1.0)  # its fp32 bound
    assert "fp32 bound" in no_amx.source


def test_tuning_chart_from_metadata(tmp_path):
    from cpubench.tuning_chart import main

    warm = tmp_path / "warm.json"
    warm.write_text(json.dumps({"progress": [[1.0, 0, 16.0], [5.0, 200, 13.0]], "model_latency_ms": 12.5,
                                "total_seconds": 600, "reference_latency_ms": 10.0}))
    cold = tmp_path / "cold.json"
    cold.write_text(json.dumps({"progress": [[20.0, 1280, 15.0], [38.0, 2300, 10.1]]}))
    out = tmp_path / "curve.png"
    assert main([str(out), f"{warm}:warm", f"{cold}:cold"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "old.json").write_text(json.dumps({"model": "resnet18"}))
    with pytest.raises(SystemExit):
        main([str(out), str(tmp_path / "old.json")])


def test_confirm_ratio_times_both_again_interleaved():
    from types import SimpleNamespace

    from cpubench.schedule import Schedule, VariantRounds

    asked = []

    def retime(model, variants, seconds_per_variant):
        asked.append((model, variants))
        rounds = {"onnxruntime": VariantRounds({r: [0.002 * (1 + r)] for r in range(6)}),
                  "torch": VariantRounds({r: [0.006 * (1 + r)] for r in range(6)})}
        return Schedule(rounds, 6, 0.1, 1.0)

    ratio = gate.confirm_ratio(SimpleNamespace(retime=retime), "resnet18", "torch")
    assert asked == [("resnet18", ["onnxruntime", "torch"])]
    assert ratio.value == pytest.approx(3.0) and ratio.pairs == 6  # the drift (1+r) cancels in each pair


def test_the_report_says_how_many_processes_timed_each_variant():
    from cpubench.report import processes_summary

    timing = {"median": 0.01}
    rows = [BenchRow("m", "onnxruntime", 1, timing, {"timing_processes": 3}),
            BenchRow("m", "openvino", 1, timing, {"timing_processes": 2}),
            BenchRow("m", "torch", 1, timing, {"timing_processes": 2}),
            BenchRow("m", "tvm", 1, timing, {"timing_processes": 1}),
            BenchRow("other", "torch", 1, timing, {"timing_processes": 5})]
    assert processes_summary(rows, "m") == "2 per variant taking its rounds in turn; onnxruntime 3, tvm 1"
    assert processes_summary(rows, "none") == "none timed"
    single = [BenchRow("m", "onnxruntime", 1, timing, {"timing_processes": 3}),
              BenchRow("m", "torch", 1, timing, {"timing_processes": 1}),
              BenchRow("m", "tvm", 1, timing, {"timing_processes": 1})]
    assert processes_summary(single, "m") == "1 per variant; onnxruntime 3"  # --processes 1
