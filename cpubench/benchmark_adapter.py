"""The one place cpubench reaches into pytest-benchmark. Rounds are timed in worker processes, interleaved across
variants, so they reach the `benchmark` fixture from outside: they are handed to it as its own rounds, and
`--benchmark-json`, `--benchmark-compare`, `--benchmark-autosave` and histograms then hold them.

pytest-benchmark has no public way to do that, so this module uses two internals (`_make_stats`, `_mode`), tested
with the releases in TESTED; tests/test_benchmark_adapter.py fails when they change. Options that would change how
pytest-benchmark times a function are refused with the reason (REFUSED): nothing is timed by pytest-benchmark here.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .errors import UsageError

TESTED = ("5.3",)  # pytest-benchmark releases (major.minor) whose internals this module was checked against
MODE = "cpubench: interleaved rounds in worker processes"

_ROUNDS = "cpubench times interleaved rounds in worker processes, not pytest-benchmark"
# Options about how pytest-benchmark times a function, each refused with what to use instead. Every other
# --benchmark-* option works as pytest-benchmark documents it: --benchmark-max-time is each variant's share of timed
# calls (spread over the rotations), --benchmark-min-rounds its fewest rounds, and the storage, comparison and
# display options act on the rounds handed over here.
REFUSED = {
    "--benchmark-min-time": f"{_ROUNDS}; a round's length is --round-ms (default 50)",
    "--benchmark-timer": f"{_ROUNDS}; the workers time each call with time.perf_counter",
    "--benchmark-calibration-precision": f"{_ROUNDS}; a round calls the model until --round-ms has passed",
    "--benchmark-precision": f"{_ROUNDS}; the number of rounds follows --benchmark-max-time and "
                             "--benchmark-min-rounds, and each median carries its interval",
    "--benchmark-confidence": f"{_ROUNDS}; medians carry 95% bootstrap intervals",
    "--benchmark-warmup": f"{_ROUNDS}; warm-up is always on: each build runs the model once before timing, and "
                          "each round starts with an untimed call",
    "--benchmark-warmup-iterations": f"{_ROUNDS}; warm-up is always on (see --benchmark-warmup)",
    "--benchmark-disable-gc": f"{_ROUNDS}; the models run in worker processes, outside this one's garbage collector",
    "--benchmark-cprofile": "the models run in worker processes: a profile of this process would show waiting only",
    "--benchmark-cprofile-loops": "the models run in worker processes (see --benchmark-cprofile)",
    "--benchmark-cprofile-top": "the models run in worker processes (see --benchmark-cprofile)",
    "--benchmark-cprofile-dump": "the models run in worker processes (see --benchmark-cprofile)",
}


def installed_version() -> str | None:
    try:
        return version("pytest-benchmark")
    except PackageNotFoundError:
        return None


def check_version(installed: str | None = None) -> None:
    """A release whose internals were not checked is refused in one line (pyproject.toml pins the tested ones)."""
    installed = installed if installed is not None else installed_version()
    if installed is None:
        raise UsageError("pytest-benchmark is not installed: run `make test` or `pip install -e .`")
    if ".".join(installed.split(".")[:2]) not in TESTED:
        raise UsageError(f"pytest-benchmark {installed}: cpubench hands it rounds through internals checked with "
                         f"{', '.join(TESTED)}.x only (cpubench/benchmark_adapter.py); install "
                         f"`pytest-benchmark=={TESTED[-1]}.*`")


def given_options(args: Iterable[str]) -> list[str]:
    """The --benchmark-* option names among command-line tokens (`--name=value` or `--name value`)."""
    return [token.split("=", 1)[0] for token in args if token.startswith("--benchmark-")]


def command_line(config: Any) -> list[str]:
    """Every token pytest read options from: PYTEST_ADDOPTS, the ini file's addopts, then the command line."""
    tokens = shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))
    tokens += [token for line in config.getini("addopts") for token in shlex.split(line)]
    return tokens + [str(arg) for arg in config.invocation_params.args]


def check_options(tokens: Iterable[str]) -> None:
    """The first refused --benchmark-* option among `tokens`, as a UsageError that says why and what to use."""
    for name in given_options(tokens):
        if name in REFUSED:
            raise UsageError(f"{name}: not supported: {REFUSED[name]}")


def claim(benchmark: Any) -> None:
    """Mark the fixture as used: pytest-benchmark warns about a fixture a test never called, and refuses a second
    use."""
    benchmark._mode = MODE


def hand_over(benchmark: Any, round_seconds: Iterable[float]) -> None:
    """Give the fixture `round_seconds` (seconds per call, one value per round) as the rounds it timed itself, one
    call per round."""
    stats = benchmark._make_stats(1)
    for seconds in round_seconds:
        stats.update(seconds)
