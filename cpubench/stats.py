"""Statistics of timings: percentiles and throughput for the report, and moving-block bootstrap intervals for
medians and ratios."""

from __future__ import annotations

import math

import numpy as np


def percentile_stats(data_seconds: list[float], batch_size: int) -> dict[str, float]:
    data = np.asarray(data_seconds, dtype=np.float64)
    median = float(np.median(data))
    return {
        "rounds": int(data.size),
        "min": float(data.min()), "max": float(data.max()),
        "mean": float(data.mean()), "stddev": float(data.std(ddof=1)) if data.size > 1 else 0.0,
        "median": median,
        "p50": float(np.percentile(data, 50)), "p90": float(np.percentile(data, 90)),
        "p99": float(np.percentile(data, 99)),
        "ips": batch_size / median if median > 0 else float("nan"),
    }


CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000


def block_length(size: int) -> int:
    """Rounds per block of the bootstrap: the cube root of their count (4 for 60 rotations), the usual rule for a
    moving-block bootstrap's variance (Hall, Horowitz and Jing, 1995)."""
    return max(1, math.ceil(size ** (1 / 3) - 1e-9))  # the epsilon: 27 ** (1 / 3) is 3.0000000000000004


def median_interval(values: list[float], confidence: float = CONFIDENCE, samples: int = BOOTSTRAP_SAMPLES,
                    seed: int = 0, block: int | None = None,
                    groups: list[object] | None = None) -> tuple[float, float, float]:
    """(median, low, high): the median of `values` with a moving-block bootstrap interval over them. The values are
    rounds (or per-rotation ratios) in the order they were timed, not single calls: calls within a round share the
    machine's state. Neighbouring rounds share some of it too (the machine's speed, and how it favours one kind of
    code over another, drift over minutes), so the bootstrap draws runs of `block` consecutive rounds rather than
    single ones (default `block_length`); an interval that treated them as independent would be too narrow.

    `groups` (one label per value: the worker process, or the pair of processes of a ratio, that ran it): processes
    of one variant differ by a few percent, so with two groups or more the bootstrap first resamples the groups,
    then blocks of rounds within each (`grouped_interval`), and the interval covers the spread between processes."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan"), float("nan")
    median = float(np.median(data))
    if data.size == 1:
        return median, median, median
    if groups is not None and len(set(groups)) > 1:
        return median, *grouped_interval(data, groups, confidence, samples, seed)
    size = data.size
    length = min(size, block or block_length(size))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, size - length + 1, size=(samples, -(-size // length)))
    picks = (starts[:, :, None] + np.arange(length)).reshape(samples, -1)[:, :size]
    resampled = np.median(data[picks], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return median, float(low), float(high)


def grouped_interval(data: np.ndarray, groups: list[object], confidence: float, samples: int,
                     seed: int) -> tuple[float, float]:
    """A two-stage bootstrap of the median: draw as many groups as there are, with replacement, then a moving-block
    resample of each drawn group's values (in their order)."""
    rng = np.random.default_rng(seed)
    members = [data[[i for i, g in enumerate(groups) if g == label]] for label in dict.fromkeys(groups)]
    medians = np.empty(samples)
    for s in range(samples):
        parts = []
        for index in rng.integers(0, len(members), size=len(members)):
            values = members[index]
            length = min(values.size, block_length(values.size))
            starts = rng.integers(0, values.size - length + 1, size=-(-values.size // length))
            parts.append(values[(starts[:, None] + np.arange(length)).reshape(-1)[:values.size]])
        medians[s] = np.median(np.concatenate(parts))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


# A call more than STALL_FACTOR x its variant's median call is a stall: the machine, not the variant, took that
# time (a 50 ms round then holds one long call instead of fifteen short ones).
STALL_FACTOR = 2.0
# Two speeds: the calls split (2-means on log time) into groups of at least MODE_MIN_SHARE each, MODE_MIN_GAP
# apart in time, and separated (Ashman's D above MODE_MIN_SEPARATION: no bridge of calls in between).
MODE_MIN_SHARE = 0.1
MODE_MIN_GAP = 1.3
MODE_MIN_SEPARATION = 2.0
TAIL_CALLS = 100  # a p99 from fewer calls is the slowest call or two, and says so


def call_stats(calls_seconds: list[float]) -> dict[str, object]:
    """Per-call latency over every timed call of a variant (not round means): p50/p90/p99, how many calls they
    rest on, how many stalled, and the speeds when the calls fall into two (`modes`: [[ms, share], ...])."""
    data = np.sort(np.asarray(calls_seconds, dtype=np.float64))
    if data.size == 0:
        return {"calls": 0}
    median = float(np.median(data))
    # Speeds are looked for below twice the stall threshold (a stall is not a speed); stalls are then counted
    # against the slower speed, so a variant with two speeds does not count its slow half as stalled.
    modes = speeds(data[data <= 2 * STALL_FACTOR * median])
    typical = modes[-1][0] / 1e3 if modes else median
    return {
        "calls": int(data.size),
        "call_p50": float(np.percentile(data, 50)), "call_p90": float(np.percentile(data, 90)),
        "call_p99": float(np.percentile(data, 99)), "call_max": float(data[-1]),
        "stalled_calls": int(np.sum(data > STALL_FACTOR * typical)),
        "modes": modes,
    }


def speeds(sorted_seconds: np.ndarray) -> list[list[float]] | None:
    """[[ms, share], [ms, share]] when the calls fall into two separate speeds, else None."""
    data = np.log(sorted_seconds[sorted_seconds > 0])
    if data.size < 20:
        return None
    best = None
    for cut in range(1, data.size):  # 1-D 2-means: the optimum is a split of the sorted values
        low, high = data[:cut], data[cut:]
        cost = low.var() * low.size + high.var() * high.size
        if best is None or cost < best[0]:
            best = (cost, cut)
    cut = best[1]
    low, high = data[:cut], data[cut:]
    share = low.size / data.size
    if min(share, 1 - share) < MODE_MIN_SHARE or np.exp(np.median(high) - np.median(low)) < MODE_MIN_GAP:
        return None
    spread = math.sqrt(low.var() + high.var()) or 1e-12
    if math.sqrt(2) * (high.mean() - low.mean()) / spread < MODE_MIN_SEPARATION:
        return None
    return [[float(np.exp(np.median(low))) * 1e3, share], [float(np.exp(np.median(high))) * 1e3, 1 - share]]
