"""The environment of a pytest that a test starts: the caller's own, less what pytest-xdist set for its workers.

`make test` runs most of tests/ under pytest-xdist, which marks its workers with PYTEST_XDIST_* variables. A pytest
started from one of them would inherit the mark, and pytest-benchmark then turns itself off ("xdist plugin is
active"): the child run would not be the run a user makes."""

from __future__ import annotations

import os


def pytest_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_XDIST_")}
    return {**env, **extra}


def require_alone(what: str) -> None:
    """Fail a test that runs a timed session of the suite from a pytest-xdist worker: beside another test, its
    timings (and the gate's verdicts on them) would measure that test too. Such a test is marked `alone`, and
    `make test` runs those one at a time (`pytest tests/ -m alone`, without -n)."""
    import pytest

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        pytest.fail(f"{what} runs a timed session of the suite beside other tests (pytest-xdist worker {worker}): "
                    "mark the test @pytest.mark.alone and run those without -n (`pytest tests/ -m alone`)",
                    pytrace=False)
