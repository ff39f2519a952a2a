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
                    seed: int = 0, block: int | None = None) -> tuple[float, float, float]:
    """(median, low, high): the median of `values` with a moving-block bootstrap interval over them. The values are
    rounds (or per-rotation ratios) in the order they were timed, not single calls: calls within a round share the
    machine's state. Neighbouring rounds share some of it too (the machine's speed, and how it favours one kind of
    code over another, drift over minutes), so the bootstrap draws runs of `block` consecutive rounds rather than
    single ones (default `block_length`); an interval that treated them as independent would be too narrow."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan"), float("nan")
    median = float(np.median(data))
    if data.size == 1:
        return median, median, median
    size = data.size
    length = min(size, block or block_length(size))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, size - length + 1, size=(samples, -(-size // length)))
    picks = (starts[:, :, None] + np.arange(length)).reshape(samples, -1)[:, :size]
    resampled = np.median(data[picks], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return median, float(low), float(high)
