"""Per-call latency, stalls, two speeds and intervals over processes (cpubench/stats.py), and how the report shows
them (cpubench/report.py); made-up calls, no timing."""

from __future__ import annotations

import numpy as np
import pytest

from cpubench.report import speed_lines, stall_line, table_lines
from cpubench.results import BenchRow, ratio_of
from cpubench.stats import STALL_FACTOR, call_stats, median_interval, percentile_stats

RNG = np.random.default_rng(0)


def two_speeds(fast_ms: float = 1.5, slow_ms: float = 3.0, fast: int = 600, slow: int = 400) -> list[float]:
    calls = [*RNG.normal(fast_ms, fast_ms * 0.03, fast), *RNG.normal(slow_ms, slow_ms * 0.03, slow)]
    return [c / 1e3 for c in RNG.permutation(calls)]


def test_percentiles_are_of_single_calls_with_their_count():
    calls = [0.001] * 98 + [0.004, 0.010]
    stats = call_stats(calls)
    assert stats["calls"] == 100 and stats["call_p50"] == pytest.approx(0.001)
    assert stats["call_p99"] == pytest.approx(0.004 + 0.01 * (0.010 - 0.004))  # numpy's linear interpolation
    assert stats["call_max"] == pytest.approx(0.010)


def test_stalls_are_calls_over_twice_the_typical_call():
    calls = [0.009] * 290 + [0.020, 0.050, 0.074] + [0.0175] * 7  # 17.5 ms is under 2x: not a stall
    stats = call_stats(calls)
    assert stats["stalled_calls"] == 3 and stats["modes"] is None


def test_two_speeds_are_found_with_their_share_and_time():
    modes = call_stats(two_speeds())["modes"]
    assert modes is not None
    (fast, fast_share), (slow, slow_share) = modes
    assert fast == pytest.approx(1.5, rel=0.03) and slow == pytest.approx(3.0, rel=0.03)
    assert fast_share == pytest.approx(0.6, abs=0.01) and slow_share == pytest.approx(0.4, abs=0.01)


def test_the_slow_speed_is_not_counted_as_stalled():
    calls = two_speeds() + [0.020]  # 20 ms: a stall against the 3 ms speed too
    assert call_stats(calls)["stalled_calls"] == 1


@pytest.mark.parametrize("calls", [
    [c / 1e3 for c in RNG.lognormal(np.log(9.0), 0.1, 500)],  # one speed with a spread
    [0.009] * 95 + [0.0125] * 5,  # a few slow calls: under the share two speeds need
    [0.009] * 10 + [0.018] * 5,  # too few calls to tell
])
def test_one_speed_is_one_speed(calls):
    assert call_stats(calls)["modes"] is None


def test_an_interval_over_processes_covers_the_spread_between_them():
    # Three processes, 5% apart, each steady: resampling rounds alone gives an interval around the middle one;
    # resampling the processes first spans all three.
    # Rounds go to the processes in turn, as ProcessRotation hands them out.
    values = [(1.0, 1.05, 1.1)[i % 3] + 0.002 * (i // 3 % 2) for i in range(60)]
    groups = [i % 3 for i in range(60)]
    _, low, high = median_interval(values)
    _, glow, ghigh = median_interval(values, groups=groups)
    assert ghigh - glow > 2 * (high - low)
    assert glow <= 1.01 and ghigh >= 1.09


def test_a_ratio_groups_by_the_pair_of_processes_behind_it():
    rounds_a = {r: 0.010 * (1.1 if r % 2 else 1.0) for r in range(40)}  # its second process 10% slower
    rounds_b = {r: 0.010 for r in range(40)}
    a = BenchRow("m", "litert", 1, percentile_stats(list(rounds_a.values()), 1), rounds=rounds_a,
                 processes={r: r % 2 for r in range(40)})
    b = BenchRow("m", "onnxruntime", 1, percentile_stats(list(rounds_b.values()), 1), rounds=rounds_b,
                 processes={r: r % 3 for r in range(40)})
    ratio = ratio_of(a, b)
    assert ratio.low <= 1.01 and ratio.high >= 1.09  # both processes' speeds are inside


def context(calls_ms: list[list[float]]) -> dict:
    flat = [c / 1e3 for r in calls_ms for c in r]
    return {**call_stats(flat), "call_ms": calls_ms, "precision": "int8"}


def test_the_report_shows_per_call_columns_two_speeds_and_where_stalls_fall():
    steady = [[9.0] * 5 for _ in range(20)]
    steady[3][0] = 40.0  # one stall, at the start of a round
    steady[7][4] = 40.0  # one, late in a round
    fast = RNG.permutation([1.5] * 300 + [3.0] * 200).reshape(20, 25).tolist()
    rows = [BenchRow("m", "onnxruntime", 1, percentile_stats([0.009] * 20, 1), {**context(steady), "precision": "fp32"},
                     {r: 0.009 for r in range(20)}),
            BenchRow("m", "openvino-int8", 1, percentile_stats([0.002] * 20, 1), context(fast),
                     {r: 0.002 for r in range(20)})]
    text = "\n".join(table_lines(rows))
    assert "| 9.00 / " in text and "(100)" in text and "| 2 (2.0%) |" in text
    lines = speed_lines(rows)
    assert any("openvino-int8 (int8) has two speeds: 1.50 ms 60%, 3.00 ms 40%" in line for line in lines)
    line = stall_line(rows)
    assert f"over {STALL_FACTOR:g}x" in line and "2 of 600" in line
    assert "just after the worker resumed: " in line and "later in rounds: " in line


def test_processes_at_different_speeds_are_said_so_and_pytorch_eagers_known_cause_named():
    def row(variant, precision, medians):
        return BenchRow("m", variant, 1, percentile_stats([0.009] * 5, 1),
                        {**context([[9.0] * 5 for _ in range(5)]), "precision": precision,
                         "process_medians_ms": medians}, {r: 0.009 for r in range(5)})

    lines = speed_lines([row("onnxruntime", "fp32", [9.0, 9.5, 9.2]), row("torch", "fp32", [13.49, 23.97]),
                         row("torch-bf16", "bf16", [10.0, 12.0]), row("openvino", "fp32", [5.0, 6.0])])
    flagged = [line for line in lines if "ran at different speeds" in line]
    assert len(flagged) == 3  # onnxruntime's 5.6% is within PROCESS_SPREAD_FLAG
    assert "torch (fp32) ran at different speeds in its worker processes: 13.49, 23.97 ms (78%)" in flagged[0]
    assert "PyTorch eager's own" in flagged[0] and "PyTorch eager's own" in flagged[1]
    assert "PyTorch" not in flagged[2]


def test_a_p99_from_few_calls_says_so():
    rows = [BenchRow("m", "onnxruntime", 1, percentile_stats([0.009] * 5, 1),
                     {**context([[9.0] * 5 for _ in range(5)]), "precision": "fp32"}, {r: 0.009 for r in range(5)})]
    assert "(25)" in "\n".join(table_lines(rows)) and "* under 100 calls" in speed_lines(rows)[0]
