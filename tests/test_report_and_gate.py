"""The report table, the chart and the report's lines, on made-up rows (no timing needed); the regression gate's
tests are in test_gate.py."""

from __future__ import annotations

import json

import pytest

from cpubench.chart import write_chart
from cpubench.report import table_lines
from cpubench.results import BenchRow, fastest_and_tied, ratio_of, ratios
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


def test_verdict_line_speaks_in_the_tables_own_column():
    # Every "x" in a verdict is the table's × onnxruntime column with its interval, so it can be read off the table
    # and recomputed from the JSON; no second, derived ratio that could disagree with it.
    rows = [*ROWS, BenchRow("resnet18", "openvino-bf16", 285, percentile_stats([0.002] * 5, 1),
                            {"precision": "bf16"})]
    text = "\n".join(table_lines(rows))
    assert ("**resnet18: fastest is openvino-bf16 in bf16 (2.00 ms, 0.25× [0.25, 0.25])** (times in × onnxruntime "
            "fp32's, as in the table); next onnxruntime in fp32 (8.00 ms, 1.00× [1.00, 1.00])") in text
    assert "| openvino-bf16 | bf16 | 2.00 |" in text and "| 0.25 [0.25, 0.25] |" in text
    assert "**efficientnet_lite0: fastest is onnxruntime in fp32 (4.00 ms, 1.00× [1.00, 1.00])**" in text
    assert "ahead of" not in text


def test_verdict_says_tied_when_the_interval_reaches_one():
    rounds_a = {r: 0.010 * (1.02 if r % 2 else 0.99) for r in range(10)}
    rounds_b = {r: 0.010 * (0.99 if r % 2 else 1.02) for r in range(10)}
    rows = [BenchRow("m", "onnxruntime", 1, percentile_stats(list(rounds_a.values()), 1), rounds=rounds_a),
            BenchRow("m", "litert", 1, percentile_stats(list(rounds_b.values()), 1), rounds=rounds_b)]
    text = "\n".join(table_lines(rows))
    assert "**m: tied for fastest:" in text
    assert "of onnxruntime's time, paired per rotation, an interval that reaches 1.0" in text
    assert "fastest is" not in text


def drifting_pair(step: float) -> list[BenchRow]:
    """ONNX Runtime with noise of its own, and two variants that drift together, the second `step` times the first
    in every rotation: against ONNX Runtime their intervals overlap, against each other they are `step` apart."""
    ort = {r: 0.010 * (1 + 0.15 * ((r * 7919) % 11 - 5) / 5) for r in range(30)}
    first = {r: 0.009 * (1 + 0.15 * ((r * 104729) % 13 - 6) / 6) for r in range(30)}
    second = {r: t * step for r, t in first.items()}
    return [BenchRow("m", name, 1, percentile_stats(list(rounds.values()), 1), rounds=rounds)
            for name, rounds in (("onnxruntime", ort), ("openvino", first), ("litert", second))]


def test_overlapping_intervals_are_no_tie_when_the_paired_ratio_is_clear_of_one():
    rows = drifting_pair(1.05)
    column = {(r.model, r.variant): ratio_of(r, rows[0]) for r in rows}
    assert column[("m", "litert")].low < column[("m", "openvino")].high  # the old rule would say tied
    text = "\n".join(table_lines(rows))
    assert "**m: fastest is openvino in fp32" in text and "tied" not in text
    # The same rows through compare's rule: one fastest, nothing tied.
    assert fastest_and_tied(rows, rows[0]) == (rows[1], [])
    best, tied = fastest_and_tied(drifting_pair(1.0), rows[0])
    assert [r.variant for r, _ in tied] == ["litert" if best.variant == "openvino" else "openvino"]


def test_chart_is_a_png(tmp_path):
    path = write_chart(ROWS, tmp_path / "latency.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


class YardstickSuite:
    """What plugin.efficiency_context and report.yardstick_lines read of a session: a 1.8 GFLOP model, the peak kernel
    at 100 GFLOP/s, numpy's GEMM at 50 and torch's at 75 in the same rotations, ONNX Runtime's GEMM not built."""

    def __init__(self) -> None:
        from cpubench.yardstick import GEMM_FLOPS, PEAK

        self.kernels = {PEAK: {"flops_per_call": 10**8, "kernel": "12 chains of 16-lane float32 multiply-adds"},
                        "gemm-numpy": {"flops_per_call": GEMM_FLOPS, "kernel": "numpy matmul, OpenBLAS Haswell"},
                        "gemm-torch": {"flops_per_call": GEMM_FLOPS, "kernel": "torch.mm through MKL"},
                        "gemm-onnxruntime": "ImportError: no onnxruntime"}
        seconds = {PEAK: 1e8 / 100e9, "gemm-numpy": GEMM_FLOPS / 50e9, "gemm-torch": GEMM_FLOPS / 75e9}
        self.rounds = {name: dict.fromkeys(range(8), per_call) for name, per_call in seconds.items()}
        self.store = self.launcher = self.measurement = self  # the fake plays each of the session's parts

    def flops(self, model):
        return 1.8e9

    def winograd_allowance(self, model):
        return 1.6

    def padding_allowance(self, model):
        return 1.05

    def yardstick_kernels(self):
        return self.kernels

    def yardstick_rounds(self, model):
        return self.rounds


def test_efficiency_is_against_the_best_gemm_and_the_peak_each_named_with_its_kernel():
    from cpubench.plugin import efficiency_context
    from cpubench.report import yardstick_lines

    suite = YardstickSuite()
    context = efficiency_context(suite, "resnet18", dict.fromkeys(range(8), 0.036))  # 50 GFLOP/s: half the peak
    assert context["peak_share"] == pytest.approx(0.5) and context["cpu_peak_gflops"] == pytest.approx(100.0)
    assert context["cpu_gemm"] == "gemm-torch" and context["cpu_gemm_gflops"] == pytest.approx(75.0)
    assert context["efficiency"] == pytest.approx(50 / 75, abs=1e-4)
    assert (context["model_gflop"], context["winograd_allowance"], context["padding_allowance"]) == (1.8, 1.6, 1.05)
    onnxruntime = BenchRow("resnet18", "onnxruntime", 285, percentile_stats([0.036] * 5, 1), context)
    assert "| 67% [67, 67] · 50% of peak |" in "\n".join(table_lines([onnxruntime]))
    assert yardstick_lines(suite, [onnxruntime]) == [
        "- resnet18: 1.80 GFLOP a forward pass (counted on its ONNX graph, batch 1); this CPU in the same rotations: "
        "peak 100 GFLOP/s [100, 100] (12 chains of 16-lane float32 multiply-adds); gemm-numpy 50 GFLOP/s (numpy "
        "matmul, OpenBLAS Haswell); gemm-torch 75 GFLOP/s (best) (torch.mm through MKL); gemm-onnxruntime not timed "
        "(ImportError: no onnxruntime)"]
    assert context["best_peak_share"] == pytest.approx(0.5)
    # A GEMM faster than the peak kernel (AVX-512 hidden from LLVM but not from a library) raises the peak that
    # "implausible" is judged against: a model at 120 GFLOP/s beside a 150 GFLOP/s GEMM is 80% of it, not 120%.
    from cpubench.yardstick import GEMM_FLOPS

    suite.rounds["gemm-torch"] = dict.fromkeys(range(8), GEMM_FLOPS / 150e9)
    faster = efficiency_context(suite, "resnet18", dict.fromkeys(range(8), 0.015))
    assert faster["peak_share"] == pytest.approx(1.2) and faster["best_peak_share"] == pytest.approx(0.8)
    # Without the peak kernel's rounds there is nothing to measure against: no column.
    suite.rounds = {}
    assert efficiency_context(suite, "resnet18", dict.fromkeys(range(8), 0.036)) == {}
