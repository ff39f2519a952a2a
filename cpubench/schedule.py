"""Interleaved rounds: how variants are timed so that the machine's drift hits every variant alike.

Timing is a sequence of rotations. In each rotation every variant (in a fresh shuffled order) runs one short round
in its own worker while the others wait; a slow variant takes part in evenly spaced rotations only, enough for its
share of the time. Only one worker computes at a time. A round starts with untimed calls (the worker's thread pool
wakes up, its caches fill), then times calls for `round_seconds`; then every thread of that worker is stopped
(SIGSTOP, until its next request: thread pools spin after work, and would otherwise run beside the next variant's
round). Variants are compared on rounds of the same rotation: neighbours in time, so a slow minute slows both
sides of a ratio (Google Benchmark's random interleaving, pyperf's spread over processes).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median
from typing import Any, Protocol

DEFAULT_ROUND_SECONDS = 0.05
WARMUP_SECONDS = 0.005  # untimed calls before each round's clock starts (at least one call)
# A call this long outlasts four 50 ms rounds: such a variant (untuned TVM) gets a few long rounds, in one process,
# and its ratio is too coarse to hold to the stability targets (benches/test_stability.py reports it).
LONG_CALL_SECONDS = 0.2


class RoundRunner(Protocol):
    """What the schedule needs of a worker: one round of timed calls, each call's seconds."""

    def request(self, kind: str, *args: Any, timeout: float | None = None, doing: str = "") -> Any: ...

    def pause(self) -> float: ...


class ProcessRotation:
    """Several worker processes of one variant, timed as one: each round goes to the next process in turn, so the
    variant's rounds pool what each process happens to get (memory placement, thread affinity, allocator state),
    which differs by several percent from one process to the next. pyperf spreads over processes for the same
    reason. Other requests go to the first process."""

    def __init__(self, workers: list[RoundRunner]) -> None:
        if not workers:
            raise ValueError("ProcessRotation needs at least one worker")
        self.workers = list(workers)
        self._next = 0
        self._last: RoundRunner = self.workers[0]
        self.last_index = 0  # which process took the last round

    def request(self, kind: str, *args: Any, timeout: float | None = None, doing: str = "") -> Any:
        if kind != "round":
            return self.workers[0].request(kind, *args, timeout=timeout, doing=doing)
        self.last_index = self._next % len(self.workers)
        self._last = self.workers[self.last_index]
        self._next += 1
        return self._last.request(kind, *args, timeout=timeout, doing=doing)

    def pause(self) -> float:
        return self._last.pause()


@dataclass
class VariantRounds:
    """One variant's rounds: per rotation index, the seconds of each timed call in that round."""

    calls: dict[int, list[float]] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)  # rotation -> when its round began (Unix time)
    process: dict[int, int] = field(default_factory=dict)  # rotation -> which of the variant's processes ran it
    failure: BaseException | None = None  # the worker died or failed mid-way; its rounds so far are kept

    @property
    def round_means(self) -> dict[int, float]:
        """Seconds per call, one value per round: what pytest-benchmark stores as the round's time."""
        return {r: sum(c) / len(c) for r, c in sorted(self.calls.items())}

    @property
    def values(self) -> list[float]:
        return list(self.round_means.values())


@dataclass
class Schedule:
    """The outcome of one interleaved measurement over some variants."""

    rounds: dict[str, VariantRounds]
    rotations: int
    round_seconds: float
    wall_seconds: float
    order: list[list[str]] = field(default_factory=list)  # the shuffled order of each rotation


def plan_rotations(call_seconds: dict[Any, float], seconds_per_variant: float, round_seconds: float,
                   min_rounds: int, always: tuple[Any, ...] = (), sparse: tuple[Any, ...] = ()) -> dict[Any, list[int]]:
    """Which rotations each variant takes part in. Every variant gets at least `min_rounds` rounds and about
    `seconds_per_variant` of timed calls; a variant whose single call outlasts a round takes part in evenly spaced
    rotations only, so it does not stretch every rotation. Variants in `always` take part in every rotation (the
    yardstick: every ratio has a neighbour); variants in `sparse` in a quarter of them, at least `min_rounds` (the
    GEMMs, whose rates are read as medians over the run)."""
    def wanted(seconds_per_call: float) -> int:
        per_round = max(round_seconds, seconds_per_call)
        return max(min_rounds, math.ceil(seconds_per_variant / per_round))

    total = max(min_rounds, math.ceil(seconds_per_variant / round_seconds))  # what a variant of short calls needs
    plan = {}
    for name, seconds in call_seconds.items():
        count = total if name in always else max(min_rounds, total // 4) if name in sparse else wanted(seconds)
        plan[name] = sorted({round(i * (total - 1) / max(1, count - 1)) for i in range(count)}) if count > 1 else [0]
    return plan


def interleave(workers: dict[Any, RoundRunner], *, seconds_per_variant: float, min_rounds: int,
               round_seconds: float = DEFAULT_ROUND_SECONDS, always: tuple[Any, ...] = (),
               sparse: tuple[Any, ...] = (), seed: int | None = None,
               on_failure: Callable[[Any, BaseException], None] | None = None) -> Schedule:
    """Time every worker in interleaved rounds. A worker that dies drops out; the others carry on. Workers are keyed
    by any name: a variant, or (model, variant) when several models share the rotations."""
    rng = random.Random(seed)
    started = time.perf_counter()
    rounds = {name: VariantRounds() for name in workers}
    live = dict(workers)

    def run(name: str, rotation: int, warmup: float) -> list[float] | None:
        try:
            calls = live[name].request("round", round_seconds, warmup, doing=f"timing round {rotation + 1}")
            live[name].pause()  # its threads stop before the next variant's round starts
            return calls
        except Exception as exc:  # a dead or failing worker ends this variant only
            rounds[name].failure = exc
            live.pop(name, None)
            if on_failure is not None:
                on_failure(name, exc)
            return None

    # The first rotation takes every variant; its rounds count, and also tell how long one call takes, which plans
    # the rotations after it (every plan starts with rotation 0).
    call_seconds: dict[str, float] = {}
    plan = {name: [0] for name in live}
    total, rotation, order_log = 1, 0, []
    while rotation < total:
        names = [name for name in plan if rotation in plan[name] and name in live]
        rng.shuffle(names)
        order_log.append(names)
        for name in names:
            # A call longer than a round wakes the pool by itself: no untimed call before it.
            warmup = WARMUP_SECONDS if call_seconds.get(name, 0.0) < round_seconds else 0.0
            began = time.time()
            runner = live[name]
            calls = run(name, rotation, warmup)
            if calls is not None:
                rounds[name].calls[rotation] = calls
                rounds[name].started[rotation] = began
                rounds[name].process[rotation] = getattr(runner, "last_index", 0)
                call_seconds.setdefault(name, min(calls))
        if rotation == 0:
            plan = plan_rotations(call_seconds, seconds_per_variant, round_seconds, min_rounds, always, sparse)
            total = 1 + max((max(p) for p in plan.values()), default=0)
        rotation += 1
    return Schedule(rounds, total, round_seconds, time.perf_counter() - started, order_log)


def paired(numerator: dict[int, float], denominator: dict[int, float]) -> dict[int, float]:
    """numerator / denominator per rotation both took part in (rotation -> ratio): ratios of neighbours in time. The
    one place rounds are paired: ratios (results.py), peak shares (yardstick.py) and the tuner's ratio use it."""
    return {r: numerator[r] / denominator[r] for r in sorted(numerator) if r in denominator and denominator[r] > 0}


def paired_ratios(numerator: VariantRounds, denominator: VariantRounds) -> list[float]:
    """`paired` on two variants' round means, as a list."""
    return list(paired(numerator.round_means, denominator.round_means).values())


def boundary_cost(workers: dict[Any, RoundRunner], failures: tuple[type[BaseException], ...],
                  pings: int = 20) -> dict[str, float]:
    """What the process boundary costs a round, measured now: the round trip of an empty request (paid between
    rounds, never inside a sample: a worker times its own calls) and the timing loop's own cost per call. A worker
    that fails one of `failures` is left out."""
    trips, overheads = [], []
    for worker in workers.values():
        try:
            for _ in range(pings):
                start = time.perf_counter()
                worker.request("ping")
                trips.append(time.perf_counter() - start)
            overheads.append(worker.request("timer_overhead"))
        except failures:
            continue
    if not trips:
        return {}
    return {"round_trip_seconds": float(median(trips)), "timer_seconds_per_call": float(median(overheads))}
