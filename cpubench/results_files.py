"""Results files of the suite, as the compare command (compare.py) reads them: pytest-benchmark's `--benchmark-json`
of this suite or its own report.json, each loaded into a Run with its rounds keyed by rotation where the file allows;
and artifact paths in such files made relative to the cache, so a file travels between machines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import relative_artifact_path
from .results import BenchRow


class InputError(Exception):
    """A file this command cannot read as a run of the suite; its message is one line that names the file."""


@dataclass
class Run:
    """One run of the suite on one machine, as one file holds it."""

    path: Path
    source: str  # "pytest-benchmark JSON" or "cpubench report.json"
    machine: dict[str, Any]
    rows: list[BenchRow]
    threads: int | None = None
    batch_size: int | None = None
    cpus: int | None = None  # pytest-benchmark's machine_info.cpu.count (logical CPUs); report.json has none
    date: str | None = None  # pytest-benchmark's `datetime`; report.json has none
    commit: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    # (model, variant) -> why its rounds are not keyed by rotation (its ratios are then ratios of medians)
    unpaired: dict[tuple[str, str], str] = field(default_factory=dict)
    label: str = ""  # the table's row name, set once every run is loaded (duplicates need telling apart)
    short: str = ""  # the verdicts' name: the LLVM CPU name, e.g. `znver5`

    def row(self, model: str, variant: str) -> BenchRow | None:
        return next((r for r in self.rows if r.model == model and r.variant == variant), None)


def planned_rotations(rotations: int, count: int) -> list[int]:
    """The rotations a variant with `count` rounds took part in, out of `rotations`: every one, or `count` evenly
    spaced ones from the first to the last. The same spacing as cpubench/schedule.py's `plan_rotations` (a test
    holds the two together): a slow variant (untuned TVM) sits out the rotations between."""
    if count >= rotations:
        return list(range(rotations))
    if count <= 1:
        return [0]
    return sorted({round(i * (rotations - 1) / (count - 1)) for i in range(count)})


def _clock_agrees(started: list[float], rotations: list[int], full: list[list[float]]) -> bool:
    """Whether each round began after every round of the rotation before its own and before every round of the
    rotation after, by the start times of the variants that took part in every rotation. Rotations run one after
    another, so a round placed in the wrong rotation fails this."""
    if not full or len(started) != len(rotations):
        return False
    for t, r in zip(started, rotations, strict=True):
        for clock in full:
            if (r > 0 and not clock[r - 1] < t) or (r + 1 < len(clock) and not t < clock[r + 1]):
                return False
    return True


def _rounds_by_rotation(benchmarks: list[dict[str, Any]]) -> tuple[dict[int, dict[int, float]], dict[int, str]]:
    """Each benchmark's rounds keyed by rotation index, as report.json keys them and `ratio_of` pairs them.

    pytest-benchmark's `stats.data` lists a variant's seconds per call, one value per round, in rotation order
    (plugin.timed_rounds), but not the rotation of each. A variant in every rotation (`len(data)` ==
    `extra_info.rounds_rotations`) needs none. A slow one took part in evenly spaced rotations
    (`planned_rotations`), which `round_started_at` must confirm against the variants of the same model that took
    part in every one; otherwise its rounds stay unkeyed and its ratios are ratios of medians. Returns (index in
    `benchmarks` -> rounds) and (index -> why it has none)."""
    keyed: dict[int, dict[int, float]] = {}
    missing: dict[int, str] = {}
    full_clocks: dict[str, list[list[float]]] = {}
    for b in benchmarks:
        extra, data = b["extra_info"], (b.get("stats") or {}).get("data")
        started = extra.get("round_started_at")
        if data and isinstance(started, list) and len(data) == extra.get("rounds_rotations") == len(started):
            full_clocks.setdefault(extra["model"], []).append(started)
    for i, b in enumerate(benchmarks):
        extra, data = b["extra_info"], (b.get("stats") or {}).get("data")
        total = extra.get("rounds_rotations")
        if not data:
            missing[i] = "the file keeps no per-round data (a --benchmark-save without --benchmark-save-data)"
        elif not isinstance(total, int):
            missing[i] = "the file does not say how many rotations the run had"
        elif len(data) == total:
            keyed[i] = dict(enumerate(data))
        else:
            rotations = planned_rotations(total, len(data))
            started = extra.get("round_started_at")
            if len(rotations) == len(data) and isinstance(started, list) and \
                    _clock_agrees(started, rotations, full_clocks.get(extra["model"], [])):
                keyed[i] = dict(zip(rotations, data, strict=True))
            else:
                missing[i] = (f"the file does not confirm which of the {total} rotations its {len(data)} rounds "
                              "belong to")
    return keyed, missing


def _from_pytest_benchmark(path: Path, data: dict[str, Any]) -> Run:
    machine_info = data["machine_info"]
    ours = [b for b in data["benchmarks"] if isinstance(b.get("extra_info"), dict)
            and "model" in b["extra_info"] and "variant" in b["extra_info"]]
    if not ours or "llvm_cpu" not in machine_info:
        raise InputError(f"{path}: a pytest-benchmark file from another suite (no benchmark carries cpubench's "
                         "extra_info, or its machine_info lacks cpubench's CPU description)")
    keyed, missing = _rounds_by_rotation(ours)
    rows, unpaired = [], {}
    for i, b in enumerate(ours):
        extra, stats = b["extra_info"], b.get("stats")
        timing = None
        if stats and stats.get("median") is not None:
            timing = {"median": float(stats["median"]), "rounds": int(stats.get("rounds", 0))}
            if "median_low" in extra and "median_high" in extra:
                timing.update(median_low=float(extra["median_low"]), median_high=float(extra["median_high"]))
        rounds = keyed.get(i, {})
        # `round_process` lists which worker process ran each round, in the order of `stats.data`: the intervals
        # resample processes first, as the run's own report did.
        ran_by = extra.get("round_process")
        processes = (dict(zip(rounds, (int(p) for p in ran_by), strict=True))
                     if isinstance(ran_by, list) and len(ran_by) == len(rounds) else {})
        rows.append(BenchRow(str(extra["model"]), str(extra["variant"]), extra.get("top1", -1), timing, dict(extra),
                             rounds, processes))
        if i in missing and timing:
            unpaired[(rows[-1].model, rows[-1].variant)] = missing[i]
    first = ours[0]["extra_info"]
    cpu = machine_info.get("cpu")
    commit = data.get("commit_info") or {}
    return Run(path, "pytest-benchmark JSON", machine_info, rows, threads=first.get("threads"),
               batch_size=first.get("batch_size"), cpus=cpu.get("count") if isinstance(cpu, dict) else None,
               date=data.get("datetime"), commit=(commit.get("id") or "")[:7] or None,
               versions=dict(machine_info.get("backend_versions") or {}), unpaired=unpaired)


def _from_report(path: Path, data: dict[str, Any]) -> Run:
    machine = data["machine"]
    if not isinstance(machine, dict) or "llvm_cpu" not in machine or not isinstance(data["results"], list):
        raise InputError(f"{path}: has `machine` and `results` but not as cpubench's report.json writes them")
    rows = []
    for r in data["results"]:
        # report.json keeps each row's rounds keyed by rotation already (JSON makes the keys strings).
        rounds = {int(k): float(v) for k, v in (r.get("rounds") or {}).items()}
        timing = r.get("timing")
        if timing is not None:
            timing = {**timing, "median": float(timing["median"])}  # the one figure every cell needs
        variant = r.get("variant", r.get("backend"))  # report.json called it "backend" before 2026-12
        processes = {int(k): int(v) for k, v in (r.get("processes") or {}).items()}
        rows.append(BenchRow(str(r["model"]), str(variant), r.get("top1", -1), timing,
                             dict(r.get("context") or {}), rounds, processes))
    unpaired = {(r.model, r.variant): "the file keeps no rounds for it" for r in rows if r.timing and not r.rounds}
    return Run(path, "cpubench report.json", machine, rows, threads=data.get("threads"),
               batch_size=data.get("batch_size"), versions=dict(data.get("versions") or {}), unpaired=unpaired)


def load_run(path: Path) -> Run:
    """A run from pytest-benchmark's `--benchmark-json` file of this suite or from the suite's own report.json;
    InputError (one line naming the file) for anything else."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not JSON (not UTF-8 text)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    try:
        if isinstance(data, dict) and isinstance(data.get("benchmarks"), list) and "machine_info" in data:
            run = _from_pytest_benchmark(path, data)
        elif isinstance(data, dict) and "results" in data and "machine" in data:
            run = _from_report(path, data)
        else:
            raise InputError(f"{path}: JSON, but not a result of cpubench (neither pytest-benchmark's "
                             "--benchmark-json of this suite nor its report.json)")
    except InputError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # A file that looks like one of the two but is damaged or hand-edited: say which, never a traceback.
        raise InputError(f"{path}: a damaged cpubench result ({type(exc).__name__}: {exc})") from None
    if not any(r.timing for r in run.rows):
        raise InputError(f"{path}: a cpubench result with no timed benchmark in it")
    return run


def _contexts(data: Any) -> Iterator[dict[str, Any]]:
    """Each benchmark's extra_info (pytest-benchmark) or each row's context (report.json)."""
    if not isinstance(data, dict):
        return
    for b in data.get("benchmarks") or []:
        if isinstance(b, dict) and isinstance(b.get("extra_info"), dict):
            yield b["extra_info"]
    for r in data.get("results") or []:
        if isinstance(r, dict) and isinstance(r.get("context"), dict):
            yield r["context"]


def relative_artifact_paths(data: dict[str, Any], cache: Path | None = None) -> int:
    """Rewrite every absolute `artifact` path in a loaded results file (either kind) in place with
    `relative_artifact_path`; returns how many changed."""
    changed = 0
    for context in _contexts(data):
        value = context.get("artifact")
        if isinstance(value, str) and (new := relative_artifact_path(value, cache)) != value:
            context["artifact"] = new
            changed += 1
    return changed


def rewrite_artifact_paths(path: Path, cache: Path | None = None) -> int:
    """`relative_artifact_paths` on a results file, written back in the layout it had (indent, trailing newline)
    only when something changed (a file with none stays byte for byte as it was); returns how many changed."""
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text)
    changed = relative_artifact_paths(data, cache)
    if changed:
        second = text.splitlines()[1] if text.count("\n") else ""
        indent = len(second) - len(second.lstrip(" ")) or None
        out = json.dumps(data, indent=indent, ensure_ascii=text.isascii())
        Path(path).write_text(out + ("\n" if text.endswith("\n") else ""), encoding="utf-8")
    return changed
