"""How much a tuning run searches: candidates in all, per task and per round, and finalists re-timed per task."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

DEFAULT_TRIALS = 3000
# Warm start (seeded from the nearest stored log, see log_finder): the seeds are already good schedules, so a
# smaller budget spent on the tasks where they cost the most time reaches a cold run's result in a fraction of
# its time. With a small evolutionary population (WARM_POPULATION) about 90 candidates a minute are measured, so
# 1200 keep `pytest -m tune --models resnet18` within 20 minutes on 2 cores (measured: 14m46s, 1.11x ORT).
DEFAULT_WARM_TRIALS = 1200
DEFAULT_TRIALS_PER_TASK = 256
# Candidates built and measured per search round. Each round pays a fixed cost (evolutionary search,
# cost-model update, a new builder pool); 64 keeps that cost small next to the builds.
TRIALS_PER_ITER = 64
# Warm start: rounds of 32 (a first round over the chosen tasks costs half as much as with 64).
WARM_TRIALS_PER_ITER = 32
# Final clean measurement: how many of each task's best candidates are re-timed.
REMEASURE_TOP_K = 5


@dataclass(frozen=True)
class TuneBudget:
    trials: int | None = None  # None: DEFAULT_WARM_TRIALS when warm-started, else DEFAULT_TRIALS
    trials_per_task: int = DEFAULT_TRIALS_PER_TASK
    trials_per_iter: int | None = None  # None: WARM_TRIALS_PER_ITER when warm-started, else TRIALS_PER_ITER
    remeasure_top_k: int = REMEASURE_TOP_K
    # Evolutionary search's population per round. None: MetaSchedule's default (512) for a cold start, 64 for a
    # warm one (search.WARM_POPULATION). A tiny model's handful of trials needs few: 16 halves a test's search time.
    population: int | None = None

    def __post_init__(self) -> None:
        for name in ("trials", "trials_per_task", "trials_per_iter", "remeasure_top_k", "population"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"tuning budget: {name} must be >= 1, got {value}")

    def resolved(self, warm: bool) -> TuneBudget:
        return TuneBudget(
            trials=self.trials or (DEFAULT_WARM_TRIALS if warm else DEFAULT_TRIALS),
            trials_per_task=self.trials_per_task,
            trials_per_iter=self.trials_per_iter or (WARM_TRIALS_PER_ITER if warm else TRIALS_PER_ITER),
            remeasure_top_k=self.remeasure_top_k,
            population=self.population)
