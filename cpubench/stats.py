"""Statistics of timings: percentiles and throughput for the report, and bootstrap intervals for medians and ratios."""

from __future__ import annotations

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


def median_interval(values: list[float], confidence: float = CONFIDENCE, samples: int = BOOTSTRAP_SAMPLES,
                    seed: int = 0) -> tuple[float, float, float]:
    """(median, low, high): the median of `values` with a percentile-bootstrap interval over them. The values are
    rounds (or per-rotation ratios), not single calls: calls within a round share the machine's state, rounds
    spread over the whole measuring span do not."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return float("nan"), float("nan"), float("nan")
    median = float(np.median(data))
    if data.size == 1:
        return median, median, median
    rng = np.random.default_rng(seed)
    resampled = np.median(data[rng.integers(0, data.size, size=(samples, data.size))], axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(resampled, [tail, 100 - tail])
    return median, float(low), float(high)
