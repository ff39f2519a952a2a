"""What else ran on the CPUs while the suite timed (cpubench/machine_load.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from cpubench import machine_load
from cpubench.machine_load import Snapshot, between

BURN = [sys.executable, "-c", "while True: pass"]


def test_the_suites_own_time_is_not_counted_as_other_work():
    start = Snapshot(wall=0.0, cpus=2, busy=100.0, steal=5.0, ours=40.0)
    end = Snapshot(wall=10.0, cpus=2, busy=118.0, steal=5.4, ours=55.0)  # 18 CPU-s busy, 15 of them the suite's
    load = between(start, end)
    assert load.other_share == pytest.approx(3 / 20) and load.ours_share == pytest.approx(15 / 20)
    assert load.steal_share == pytest.approx(0.4 / 20)
    assert load.busy and "**" in load.describe() and "15.0% of the 2 CPUs' time" in load.describe()
    quiet = between(start, Snapshot(wall=10.0, cpus=2, busy=116.0, steal=5.0, ours=55.0))
    assert quiet.other_share == pytest.approx(1 / 20) and not quiet.busy and "**" not in quiet.describe()


def test_no_reading_says_nothing():
    assert between(None, Snapshot(1.0, 2, 0.0, 0.0, 0.0)) is None
    assert between(Snapshot(1.0, 2, 0.0, 0.0, 0.0), Snapshot(1.0, 2, 0.0, 0.0, 0.0)) is None


@pytest.mark.skipif(not machine_load.PROC.joinpath("stat").exists(), reason="no /proc/stat on this system")
def test_a_process_outside_the_tree_is_other_work_and_one_inside_is_ours():
    ours = subprocess.Popen(["sleep", "30"])  # the root of the "suite" in this test
    burner = subprocess.Popen(BURN)  # not under `ours`: other work
    try:
        time.sleep(0.3)
        start = machine_load.snapshot(root=ours.pid)
        time.sleep(1.5)
        load = between(start, machine_load.snapshot(root=ours.pid))
        assert load is not None
        # The burning process had a CPU to itself for most of the span (another test may share the machine).
        assert load.other_share * load.cpus >= 0.5, load
        assert load.ours_share < 0.05, load  # `sleep` uses no CPU
        mine = machine_load.snapshot(root=burner.pid)
        time.sleep(1.0)
        load = between(mine, machine_load.snapshot(root=burner.pid))
        assert load.ours_share * load.cpus >= 0.5, load  # the same process, now inside the tree
    finally:
        for process in (ours, burner):
            process.kill()
            process.wait()
