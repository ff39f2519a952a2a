"""cpubench hands rounds timed elsewhere to pytest-benchmark through two of its internals (benchmark_adapter.py).
These tests fail when a pytest-benchmark release changes them, and check the options refused or honoured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from child import pytest_env

from cpubench import benchmark_adapter
from cpubench.errors import UsageError

REPO = Path(__file__).resolve().parent.parent

HANDED = [0.004, 0.002, 0.003, 0.005, 0.001]

TEST_FILE = f"""
from cpubench import benchmark_adapter

def test_handed(benchmark):
    benchmark_adapter.claim(benchmark)
    benchmark_adapter.hand_over(benchmark, {HANDED!r})
"""


def test_handed_rounds_reach_pytest_benchmark_json(tmp_path):
    """The rounds handed over are pytest-benchmark's own: its JSON holds them and its statistics are theirs, and a
    claimed fixture raises no 'fixture was not used' warning."""
    (tmp_path / "test_handed.py").write_text(TEST_FILE)
    out = tmp_path / "run.json"
    result = subprocess.run([sys.executable, "-m", "pytest", "test_handed.py", "-p", "no:cacheprovider", "-W", "error",
                             f"--benchmark-json={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=pytest_env(PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "was not used" not in result.stdout + result.stderr
    bench = json.loads(out.read_text())["benchmarks"][0]
    assert bench["stats"]["rounds"] == len(HANDED)
    assert bench["stats"]["iterations"] == 1
    assert bench["stats"]["median"] == pytest.approx(0.003)
    assert bench["stats"]["min"] == pytest.approx(0.001)
    assert bench["stats"]["data"] == pytest.approx(HANDED)


def test_installed_release_is_a_tested_one():
    benchmark_adapter.check_version()  # raises for a release whose internals were not checked


@pytest.mark.parametrize("release", ["4.0.0", "5.2.3", "6.0.0"])
def test_untested_release_is_refused_in_one_line(release):
    with pytest.raises(UsageError, match=rf"pytest-benchmark {release}: .*install `pytest-benchmark=="):
        benchmark_adapter.check_version(release)


def test_every_refused_option_exists_in_pytest_benchmark():
    """REFUSED names real options: a renamed one would otherwise pass unrefused."""
    from pytest_benchmark import plugin

    names = []

    class Group:
        def addoption(self, *names_, **_):
            names.extend(names_)

    class Parser:
        def getgroup(self, *_, **__):
            return Group()

    plugin.pytest_addoption(Parser())
    assert set(benchmark_adapter.REFUSED) <= set(names)
    timing = {"--benchmark-min-time", "--benchmark-timer", "--benchmark-warmup", "--benchmark-disable-gc",
              "--benchmark-calibration-precision"}
    assert timing <= set(benchmark_adapter.REFUSED)


@pytest.mark.parametrize("tokens", [["--benchmark-warmup=on"], ["-q", "--benchmark-warmup", "on"],
                                    ["--benchmark-timer=time.process_time"], ["--benchmark-min-time=0.1"]])
def test_timing_options_are_refused(tokens):
    with pytest.raises(UsageError, match=r"^--benchmark-[a-z-]+: not supported: "):
        benchmark_adapter.check_options(tokens)


@pytest.mark.parametrize("tokens", [["--benchmark-max-time=3"], ["--benchmark-compare", "0001"],
                                    ["--benchmark-json=x.json", "--benchmark-sort=name"], ["--benchmark-disable"]])
def test_documented_options_pass(tokens):
    benchmark_adapter.check_options(tokens)


def test_refusal_reaches_the_user_in_one_line():
    result = subprocess.run([sys.executable, "-m", "pytest", "benches", "-p", "no:cacheprovider", "--collect-only",
                             "--benchmark-warmup=on"], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=pytest_env())
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "--benchmark-warmup: not supported: cpubench times interleaved rounds" in output
    assert "Traceback" not in output
