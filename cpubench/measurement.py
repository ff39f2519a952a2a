"""The joint measurement: every built variant of every model of the run, with the yardstick's kernels, timed once in
interleaved rotations (schedule.py); each model's share of those rotations kept as its Schedule. The gate's retimes
are measured here too."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from . import machine_load
from .launcher import Launcher
from .results import REFERENCE_BACKEND
from .schedule import Schedule, VariantRounds, boundary_cost, interleave
from .worker import Worker, WorkerDied, WorkerError
from .yardstick import GEMMS, KERNELS, PEAK


class Measurement:
    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher
        self.settings = launcher.settings
        self._schedules: dict[str, Schedule] = {}
        self.boundary: dict[str, dict[str, float]] = {}  # model -> what the process boundary costs (see measure)
        self.timed_with: dict[str, list[str]] = {}  # model -> the other models whose variants shared its rotations
        self.load: dict[str, machine_load.Load] = {}  # model -> what else ran on the CPUs while it was timed

    def measure(self, model: str, variants: list[str], together: dict[str, list[str]] | None = None) -> Schedule:
        """Time every variant of `model` that built, once per session (the first benchmark asks), in the same
        rotations as the variants of every model in `together` (the run's other models): each model's rounds then
        spread over the whole timing span of the run, not over its own share of it, so a change of the machine that
        lasts a minute weighs less on any model's ratios. Ratios still pair rounds of one rotation. Each variant
        gets --benchmark-max-time seconds of timed calls and at least --benchmark-min-rounds rounds."""
        if model not in self._schedules:
            plan = {name: list(planned) for name, planned in (together or {}).items() if name not in self._schedules}
            plan[model] = list(variants)
            self._measure_together(plan)
        return self._schedules[model]

    def _measure_together(self, plan: dict[str, list[str]]) -> None:
        launcher, settings = self.launcher, self.settings
        launcher.build_all([(model, variant) for model, variants in plan.items() for variant in variants],
                           settings.build_jobs)
        workers: dict[tuple[str, str], Any] = {
            (model, variant): runner for model, variants in plan.items()
            for variant, runner in launcher.timing_runners(model, variants).items()}
        if workers:
            workers.update({("", name): worker for name, worker in launcher.start_yardstick(next(iter(plan))).items()})
        boundary = boundary_cost(workers, (WorkerDied, WorkerError))
        timed_models = list(dict.fromkeys(model for model, _ in workers if model))
        always = tuple((model, REFERENCE_BACKEND) for model in plan) + (("", PEAK),)
        before = machine_load.snapshot()
        joint = interleave(workers, seconds_per_variant=settings.seconds_per_variant, min_rounds=settings.min_rounds,
                           round_seconds=settings.round_ms / 1e3, always=always,
                           sparse=tuple(("", name) for name in GEMMS))
        load = machine_load.between(before, machine_load.snapshot())
        for model, variants in plan.items():
            rounds = {key[1]: value for key, value in joint.rounds.items() if key[0] in (model, "")}
            for variant in variants:
                failure = launcher.pool_failure(model, variant)
                if failure is not None:
                    rounds[variant] = VariantRounds(failure=failure)
            order = [[key[1] for key in keys if key[0] in (model, "")] for keys in joint.order]
            self._schedules[model] = replace(joint, rounds=rounds, order=order)
            self.boundary[model] = boundary
            self.timed_with[model] = [other for other in timed_models if other != model]
            if load is not None and workers:
                self.load[model] = load
        for (model, variant), worker in workers.items():
            if model and joint.rounds[(model, variant)].failure is None:
                self._record_memory(launcher.build(model, variant).process, worker)

    @staticmethod
    def _record_memory(process: dict[str, Any], worker: Worker) -> None:
        """The peak memory while timing, read once the timing is over (never beside it)."""
        try:
            memory = worker.request("memory", doing="reading its memory use")
        except (WorkerDied, WorkerError):
            return
        if process.get("peak_reset"):
            process["peak_inference_mib"] = memory["peak_kib"] / 1024

    def yardstick_rounds(self, model: str) -> dict[str, dict[int, float]]:
        """Each yardstick kernel's rounds in `model`'s timing: per rotation, seconds per call."""
        schedule = self._schedules.get(model)
        if schedule is None:
            return {}
        return {name: rounds.round_means for name, rounds in schedule.rounds.items()
                if name in KERNELS and rounds.failure is None and rounds.calls}

    def timing_failure(self, model: str, variant: str) -> BaseException | None:
        schedule = self._schedules.get(model)
        rounds = schedule.rounds.get(variant) if schedule else None
        return rounds.failure if rounds else None

    def retime(self, model: str, variants: list[str], seconds_per_variant: float = 1.0,
               min_rounds: int = 10) -> Schedule:
        """Time some built variants again, interleaved, with the peak kernel in every rotation (the gate's
        sequential test: more rotations where one run's interval could not decide)."""
        workers: dict[str, Any] = {v: self.launcher.timing_runner(model, v) for v in variants if v not in KERNELS}
        peak = self.launcher.start_yardstick(model).get(PEAK)
        if peak is not None:
            workers[PEAK] = peak
        return interleave(workers, seconds_per_variant=seconds_per_variant, min_rounds=min_rounds,
                          round_seconds=self.settings.round_ms / 1e3, always=(variants[0], PEAK))

    def replace_schedule(self, model: str, schedule: Schedule) -> None:
        """Make `schedule` the model's measurement (gate_power: each of its quick runs replaces the last)."""
        self._schedules[model] = schedule
