"""What else ran on the CPUs while the suite timed: the CPU time of every process outside the suite's own process
tree, and the hypervisor's steal, read from /proc (Linux; elsewhere nothing is said).

Ratios pair rounds of one rotation and hold beside a steady load, but a 2-thread variant on a 2-core machine that
loses a core to another process can run at half its speed in the rounds it loses it, so a number says how busy the
machine was around it. The suite's own processes (this one and every descendant: the workers, their compiler
subprocesses) are left out; a process that ends during the span takes its CPU time with it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# Above this share of the CPUs' time taken by other processes while timing, the report and the tuner say so in bold.
BUSY_SHARE = 0.10


@dataclass(frozen=True)
class Snapshot:
    wall: float  # time.monotonic() seconds
    cpus: int
    busy: float  # CPU-seconds the whole machine spent running anything (steal excluded)
    steal: float  # CPU-seconds the hypervisor gave to other guests
    ours: float  # CPU-seconds of the suite's process tree


@dataclass(frozen=True)
class Load:
    seconds: float  # wall-clock span
    cpus: int
    other_share: float  # of the CPUs' time in the span, run by processes outside the suite
    steal_share: float  # of the CPUs' time in the span, stolen by the hypervisor
    ours_share: float  # of the CPUs' time in the span, run by the suite's processes

    def describe(self) -> str:
        text = (f"other processes used {self.other_share:.1%} of the {self.cpus} CPUs' time, the hypervisor stole "
                f"{self.steal_share:.1%}, the suite's own processes used {self.ours_share:.1%} "
                f"(/proc, over {self.seconds:.0f} s)")
        return f"**{text}: the machine was not quiet**" if self.busy else text

    @property
    def busy(self) -> bool:
        return self.other_share + self.steal_share > BUSY_SHARE


def _ticks() -> float:
    return float(os.sysconf("SC_CLK_TCK"))


def _machine_times() -> tuple[int, float, float]:
    """(CPUs, busy CPU-seconds, steal CPU-seconds) from /proc/stat."""
    lines = (PROC / "stat").read_text().splitlines()
    fields = [float(v) for v in lines[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0.0
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    ticks = _ticks()
    return cpus, (user + nice + system + irq + softirq) / ticks, steal / ticks


def _tree_seconds(root: int) -> float:
    """CPU-seconds (user + system, all threads) of `root` and every live descendant."""
    parent: dict[int, int] = {}
    seconds: dict[int, float] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # The command name (2nd field) is in parentheses and may hold spaces: split after its last ')'.
        rest = text[text.rindex(")") + 2:].split()
        pid = int(entry.name)
        parent[pid] = int(rest[1])
        seconds[pid] = (float(rest[11]) + float(rest[12])) / _ticks()
    total = 0.0
    for pid, cpu in seconds.items():
        node, depth = pid, 0
        while node and node != root and depth < 64:
            node, depth = parent.get(node, 0), depth + 1
        if node == root:
            total += cpu
    return total


def snapshot(root: int | None = None) -> Snapshot | None:
    """The machine's and the suite's CPU time now; None where /proc cannot tell."""
    try:
        cpus, busy, steal = _machine_times()
        return Snapshot(time.monotonic(), cpus, busy, steal, _tree_seconds(os.getpid() if root is None else root))
    except (OSError, ValueError, IndexError):
        return None


def between(start: Snapshot | None, end: Snapshot | None) -> Load | None:
    """What ran between two snapshots, as shares of the CPUs' time."""
    if start is None or end is None or end.wall <= start.wall or not end.cpus:
        return None
    span = (end.wall - start.wall) * end.cpus
    ours = max(0.0, end.ours - start.ours)
    other = max(0.0, (end.busy - start.busy) - ours)
    return Load(end.wall - start.wall, end.cpus, min(1.0, other / span), min(1.0, max(0.0, end.steal - start.steal)
                                                                              / span), min(1.0, ours / span))
