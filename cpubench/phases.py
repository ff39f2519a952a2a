"""Whether a run's slow rounds are the machine's: do different variants' slow rounds come at the same time?

Variants take their rounds in turn, a few tens of milliseconds each, so a machine that slows down for a few seconds
(another tenant on its host, a busy sibling hyperthread, a lower clock) slows the rounds of every variant timed in
those seconds. A runtime's own slowness (its thread hand-off, an allocator) keeps to its own rounds. So for each
variant, its rounds are split into slow ones (its slowest quarter) and the rest, and the other variants' rounds
within WINDOW_SECONDS of each are looked at: how many of those are slow themselves. If the variant's slow rounds
come with the machine's, the other variants' rounds around them are slow more often than around its fast rounds.

Chance is measured, not assumed: the variant's slow flags are shifted in a circle over its own rounds (which keeps
their runs and bursts but cuts their tie to the clock) and the same difference is taken at every shift; `p` is the
share of shifts that reach the observed difference. Rounds of a variant with fewer than MIN_ROUNDS are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

WINDOW_SECONDS = 3.0  # a rotation of a full run lasts 1-3 s on 2 cores: the window holds a rotation or two
SLOW_QUANTILE = 75  # a round is slow when its mean call is above this percentile of its variant's rounds
MIN_ROUNDS = 20
# Said to come with the machine's slow phases when chance reaches the difference at no more than this share of shifts
# and the other variants are slow at least this many times as often around its slow rounds as around its fast ones.
SIGNIFICANCE = 0.05
MIN_LIFT = 1.3


@dataclass(frozen=True)
class Coincidence:
    """Around a variant's slow rounds, the share of other variants' rounds (within the window) that are slow too;
    the same around its fast rounds; and the share of circular shifts at which chance gives as large a gap."""

    around_slow: float
    around_fast: float
    p: float

    @property
    def with_machine(self) -> bool:
        return self.p <= SIGNIFICANCE and self.around_slow >= MIN_LIFT * self.around_fast

    def said(self) -> str:
        return (f"other variants' rounds within {WINDOW_SECONDS:g} s are slow {self.around_slow:.0%} of the time "
                f"around its slow rounds, {self.around_fast:.0%} around its fast ones")


def slow_flags(seconds: list[float]) -> np.ndarray:
    values = np.asarray(seconds, dtype=float)
    return values > np.percentile(values, SLOW_QUANTILE)


class _Windows:
    """For each variant, its rounds' windows over the other variants' rounds (sorted by time), so that the share of
    slow rounds in each window can be recomputed cheaply for any slow flags."""

    def __init__(self, times: dict[str, np.ndarray]) -> None:
        self.names = list(times)
        self.offsets = np.cumsum([0] + [len(times[n]) for n in self.names])
        everything = np.concatenate([times[n] for n in self.names])
        self.windows = {}
        for i, name in enumerate(self.names):
            others = np.concatenate([np.arange(self.offsets[j], self.offsets[j + 1])
                                     for j in range(len(self.names)) if j != i])
            others = others[np.argsort(everything[others], kind="stable")]
            at = everything[others]
            lo = np.searchsorted(at, times[name] - WINDOW_SECONDS, side="left")
            hi = np.searchsorted(at, times[name] + WINDOW_SECONDS, side="right")
            if (hi > lo).all():
                self.windows[name] = (others, lo, hi)

    def shares(self, name: str, flags: np.ndarray) -> np.ndarray:
        """Per round of `name`: the share of slow rounds among the other variants' rounds in its window, where
        `flags` holds every variant's slow flags in `names` order, concatenated."""
        others, lo, hi = self.windows[name]
        cum = np.concatenate([[0], np.cumsum(flags[others])])
        return (cum[hi] - cum[lo]) / (hi - lo)


def _gap(share: np.ndarray, own: np.ndarray) -> float:
    return float(share[own].mean() - share[~own].mean())


def _series(series: dict[str, tuple[list[float], list[float]]]) -> tuple[_Windows, dict[str, np.ndarray]]:
    kept = {}
    for name, (started, seconds) in series.items():
        if len(started) == len(seconds) >= MIN_ROUNDS:
            flags = slow_flags(seconds)
            if flags.any() and not flags.all():
                kept[name] = (np.asarray(started, dtype=float), flags)
    windows = _Windows({name: t for name, (t, _) in kept.items()}) if len(kept) > 1 else None
    return windows, {name: f for name, (_, f) in kept.items()}


def coincidences(series: dict[str, tuple[list[float], list[float]]]) -> dict[str, Coincidence]:
    """`series`: variant -> (each round's start time in seconds, each round's mean call), in the same order.
    Returns a Coincidence for each variant with at least MIN_ROUNDS rounds, when others were timed beside it."""
    windows, flags = _series(series)
    if windows is None:
        return {}
    every = np.concatenate([flags[n] for n in windows.names])
    result = {}
    for name in windows.windows:
        share, own = windows.shares(name, every), flags[name]
        observed = _gap(share, own)
        reached = sum(1 for k in range(1, len(own)) if _gap(share, np.roll(own, k)) >= observed - 1e-12)
        result[name] = Coincidence(float(share[own].mean()), float(share[~own].mean()), (1 + reached) / len(own))
    return result


def run_test(series: dict[str, tuple[list[float], list[float]]], shuffles: int = 200,
             seed: int = 0) -> Coincidence | None:
    """The same question for the run as a whole: the shares averaged over its variants, and the share of shuffles
    (every variant's slow flags shifted in a circle by its own random amount) whose average gap reaches the
    observed one. None with fewer than two variants to compare."""
    windows, flags = _series(series)
    if windows is None or not windows.windows:
        return None

    def averages(by_name: dict[str, np.ndarray]) -> tuple[float, float]:
        every = np.concatenate([by_name[n] for n in windows.names])
        pairs = [(windows.shares(n, every), by_name[n]) for n in windows.windows]
        return (float(np.mean([s[f].mean() for s, f in pairs])), float(np.mean([s[~f].mean() for s, f in pairs])))

    slow, fast = averages(flags)
    rng = np.random.default_rng(seed)
    reached = 0
    for _ in range(shuffles):
        shifted = {n: np.roll(f, int(rng.integers(1, len(f)))) for n, f in flags.items()}
        s, f = averages(shifted)
        reached += s - f >= slow - fast - 1e-12
    return Coincidence(slow, fast, (1 + reached) / (1 + shuffles))


def of_rows(rows: list) -> dict[tuple[str, str], Coincidence]:
    """Coincidences for report rows (results.BenchRow), keyed by (model, variant): each row's round means in
    rotation order beside `round_started_at`, every model's rows together (their variants shared the rotations)."""
    return {tuple(key.split("\0")): found for key, found in coincidences(rows_series(rows)).items()}


def rows_series(rows: list) -> dict[str, tuple[list[float], list[float]]]:
    """Each report row's (round start times, round means), keyed `model\0variant`."""
    series = {}
    for row in rows:
        started = row.context.get("round_started_at") or []
        if isinstance(started, str):  # report.json files before 2026-12 kept context values as text
            try:
                started = json.loads(started)
            except ValueError:
                continue
        seconds = [row.rounds[r] for r in sorted(row.rounds)]
        if len(started) == len(seconds):
            series[f"{row.model}\0{row.variant}"] = (started, seconds)
    return series


def run_line(rows: list) -> str | None:
    """One line for the run when its variants' slow rounds come together more than chance would put them."""
    found = run_test(rows_series(rows))
    if found is None or not found.with_machine:
        return None
    return (f"- **the machine had slow phases**: other variants' rounds within {WINDOW_SECONDS:g} s of a variant's "
            f"slow round were slow {found.around_slow:.0%} of the time, {found.around_fast:.0%} around its fast ones "
            f"(averaged over variants; a round is slow in its variant's slowest quarter; chance gives as much in "
            f"{found.p:.1%} of shuffles). Slowness that variants share comes from the machine or its host, not from "
            "a runtime; a ratio pairs rounds of one rotation, timed close together, so it holds better than "
            "medians and per-call percentiles, which move with it")
