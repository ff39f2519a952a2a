"""Runs of this suite on several CPUs merged into one table per model, a CPU per row and a variant per column, like
the blog post's table: `python -m cpubench.compare RUN.json [RUN.json ...] [--out FILE]`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cache import relative_artifact_path
from .precision import BF16_CPU_FLAGS, PRECISIONS, Variant
from .results import REFERENCE_BACKEND, BenchRow, Ratio, ratio_of

# Flags in a file's `cpu_flags_bf16_amx_vnni` that mean native bfloat16, on any architecture (the suite skips bf16
# without them).
BF16_FLAGS = tuple(flag for flags in BF16_CPU_FLAGS.values() for flag in flags)
ISA_NAMES = {"avx512": "AVX-512", "avx2": "AVX2", "avx": "AVX", "sse4": "SSE4", "sve": "SVE", "neon": "NEON"}
NO_PAIRING = "†"  # marks a ratio of two medians, where the rounds could not be paired by rotation


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


# ---------------------------------------------------------------------------------------------------------- reading


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
        rows.append(BenchRow(str(extra["model"]), str(extra["variant"]), extra.get("top1", -1), timing, dict(extra),
                             keyed.get(i, {})))
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
        rows.append(BenchRow(str(r["model"]), str(variant), r.get("top1", -1), timing,
                             dict(r.get("context") or {}), rounds))
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


# --------------------------------------------------------------------------------------------------------- labelling


def _isa(machine: dict[str, Any]) -> str:
    """`AVX-512+BF16+VNNI+AMX`: the vector ISA, and what the CPU has for bfloat16, int8 dot products and tiles."""
    flags = str(machine.get("cpu_flags_bf16_amx_vnni") or "").split()
    isa = str(machine.get("vector_isa") or "?")
    extras = [name for name, present in (("BF16", any(f in BF16_FLAGS for f in flags)),
                                         ("VNNI", any("vnni" in f for f in flags)),
                                         ("AMX", any(f.startswith("amx") for f in flags))) if present]
    return "+".join([ISA_NAMES.get(isa, isa), *extras])


def _cpu_label(run: Run) -> str:
    name = re.sub(r"\((R|TM|tm|r)\)", "", str(run.machine.get("cpu_name") or "unknown CPU"))
    parts = [str(run.machine.get("llvm_cpu") or "?"), _isa(run.machine)]
    if run.cpus:
        parts.append(f"{run.cpus} CPUs")
    parts.append(f"{run.threads} threads" if run.threads else "threads unknown")
    if run.batch_size not in (None, 1):
        parts.append(f"batch {run.batch_size}")
    return f"{' '.join(name.split())} ({', '.join(parts)})"


def _when(run: Run) -> str | None:
    """`2026-12-02 13:21 UTC` from pytest-benchmark's ISO `datetime`."""
    if not run.date:
        return None
    text = run.date[:16].replace("T", " ")
    return f"{text} UTC" if run.date.endswith(("+00:00", "Z")) else text


def label_runs(runs: list[Run]) -> None:
    """Row names; runs of the same machine and settings are told apart by date, else by file name."""
    for run in runs:
        run.label, run.short = _cpu_label(run), str(run.machine.get("llvm_cpu") or run.path.stem)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    for same in groups.values():
        if len(same) < 2:
            continue
        dates = [_when(r) for r in same]
        by_date = all(dates) and len(set(dates)) == len(dates)
        names = [r.path.name for r in same]
        paths = [str(r.path) for r in same]
        for n, (run, date) in enumerate(zip(same, dates, strict=True), start=1):
            tag = date if by_date else (run.path.name if names.count(run.path.name) == 1 else str(run.path))
            if not by_date and paths.count(str(run.path)) > 1:
                tag += f" #{n}"  # the same file given twice: still two rows, told apart by position
            run.label = f"{run.label[:-1]}; {tag})"
            run.short = f"{run.short} ({tag})"


# ------------------------------------------------------------------------------------------------------------ tables


def _split(variant: str) -> tuple[str, str]:
    """`openvino-bf16` -> (`openvino`, `bf16`); `openvino` -> (`openvino`, `fp32`)."""
    parsed = Variant.parse(variant)
    return parsed.backend, parsed.precision


def _column_order(variant: str) -> tuple[int, int, str]:
    from .backends import BACKENDS  # the report's backend order (the registry imports no runtime)

    backend, precision = _split(variant)
    names = list(BACKENDS)
    # fp32 columns first, then bf16, then int8 (the order of --precision's choices); backends in the report's order
    return PRECISIONS.index(precision), names.index(backend) if backend in names else len(names), backend


def reference_ratio(run: Run, row: BenchRow) -> Ratio | None:
    """`row`'s ratio to ONNX Runtime fp32 of the same model in the same run, as the suite's report computes it:
    the median of per-rotation ratios with its block-bootstrap interval (`pairs` 0: a ratio of medians)."""
    base = run.row(row.model, REFERENCE_BACKEND)
    return None if base is None else ratio_of(row, base)


def _missing(run: Run, variant: str) -> str:
    """What a cell says for a variant the run does not have: the reason when the file gives one."""
    if _split(variant)[1] == "bf16":
        flags = str(run.machine.get("cpu_flags_bf16_amx_vnni") or "").split()
        if "cpu_flags_bf16_amx_vnni" in run.machine and not any(f in BF16_FLAGS for f in flags):
            return "— (no native bf16)"  # the suite skips bf16 there: it would be emulated (precision.cpu_lacks)
    return "—"


def _cell(run: Run, model: str, variant: str, log_in_header: bool) -> str:
    row = run.row(model, variant)
    if row is None:
        return _missing(run, variant)
    if not row.timing:
        return "— (not timed)"
    text = f"{row.ms('median'):.2f} ms"
    ratio = reference_ratio(run, row)
    if variant == REFERENCE_BACKEND:
        text += " · 1.00×"
    elif ratio is not None:
        text += f" · {ratio.value:.2f}×{NO_PAIRING}" if ratio.pairs == 0 else f" · {ratio}"
    log = row.context.get("tuning_log_label")
    if log and not log_in_header:
        text += f" ({log})"
    return text


def _header(runs: list[Run], model: str, variant: str) -> tuple[str, bool]:
    """The column's name; a tuned TVM column names the log it applied when every CPU applied the same one."""
    logs = {r.row(model, variant).context.get("tuning_log_label") for r in runs if r.row(model, variant)}
    if len(logs) == 1 and (log := logs.pop()):
        return f"{variant} ({log})", True
    return variant, False


def model_table(runs: list[Run], model: str) -> list[str]:
    shown = [r for r in runs if any(row.model == model for row in r.rows)]
    variants = sorted({row.variant for r in shown for row in r.rows if row.model == model}, key=_column_order)
    headers = [_header(shown, model, v) for v in variants]
    lines = [f"### {model}", "",
             f"median ms · × that CPU's {REFERENCE_BACKEND} fp32 [95% interval]: the median of per-rotation ratios "
             "with a block-bootstrap interval, as each run's own report computes it", "",
             "| CPU | " + " | ".join(h for h, _ in headers) + " |",
             "|---|" + "---:|" * len(variants)]
    notes = []
    for run in shown:
        lines.append(f"| {run.label} | "
                     + " | ".join(_cell(run, model, v, in_header) for v, (_, in_header) in zip(
                         variants, headers, strict=True)) + " |")
        for variant in variants:
            row = run.row(model, variant)
            if row is None or not row.timing or variant == REFERENCE_BACKEND:
                continue
            ratio = reference_ratio(run, row)
            if ratio is not None and ratio.pairs == 0:
                why = run.unpaired.get((model, variant)) or run.unpaired.get((model, REFERENCE_BACKEND)) or \
                    "no rotation both took part in"
                notes.append(f"{NO_PAIRING} {run.short} {variant}: ratio of the two medians, not of paired rounds: "
                             f"{why}.")
        if run.row(model, REFERENCE_BACKEND) is None:
            notes.append(f"{run.short}: no {REFERENCE_BACKEND} fp32 in this run, so no ratios.")
    lines.append("")
    if notes:
        lines += [*notes, ""]
    lines += verdict_lines(shown, model)
    return lines + [""]


# ---------------------------------------------------------------------------------------------------------- verdicts


def _fastest(run: Run, model: str, precision: str) -> tuple[BenchRow, list[BenchRow]] | None:
    """The fastest row of `precision`, and the rows tied with it: their paired ratio's interval reaches 1.0 (the
    report's verdict rule)."""
    timed = sorted((r for r in run.rows if r.model == model and r.timing and _split(r.variant)[1] == precision),
                   key=lambda r: r.timing["median"])
    if not timed:
        return None
    best = timed[0]
    return best, [r for r in timed[1:] if (ratio := ratio_of(r, best)) is not None and ratio.low <= 1.0]


def _agreement(row: BenchRow) -> str:
    rate = row.context.get("int8_agreement") or {}
    if rate.get("rate") is None:
        return ""
    return f", same top-1 as fp32 on {rate['agree']}/{rate['judged']} evaluation images"


def _name(row: BenchRow) -> str:
    log = row.context.get("tuning_log_label")
    return f"{row.variant} ({log})" if log else row.variant


def verdict_lines(runs: list[Run], model: str) -> list[str]:
    """Per precision, the fastest variant on each CPU with its ratio to that CPU's ONNX Runtime fp32, and whether
    one variant is fastest (or tied for it) on every CPU."""
    lines = []
    for precision in PRECISIONS:
        parts, winners = [], []
        for run in runs:
            found = _fastest(run, model, precision)
            if found is None:
                continue
            best, tied = found
            ratio = reference_ratio(run, best)
            if best.variant == REFERENCE_BACKEND:
                vs = f"{REFERENCE_BACKEND} fp32 itself"
            elif ratio is None:
                vs = f"no {REFERENCE_BACKEND} fp32 to compare with"
            elif ratio.pairs == 0:
                vs = f"{ratio.value:.2f}×{NO_PAIRING} {REFERENCE_BACKEND} fp32"
            else:
                vs = f"{ratio} {REFERENCE_BACKEND} fp32"
            text = f"on {run.short} the fastest {precision} backend is **{_name(best)}**, " \
                   f"{best.ms('median'):.2f} ms ({vs}{_agreement(best) if precision == 'int8' else ''})"
            if tied:
                text += ", tied with " + " and ".join(f"{_name(r)} ({ratio_of(r, best)} of its time)" for r in tied)
            parts.append(text)
            winners.append({_split(r.variant)[0] for r in (best, *tied)})
        if not parts:
            continue
        line = f"- **{precision}**: " + "; ".join(parts) + "."
        if len(winners) > 1:
            common = sorted(set.intersection(*winners), key=lambda b: _column_order(b)[1])
            line += (f" Fastest or tied on every CPU: {', '.join(common)}." if common
                     else " No backend is fastest (or tied for it) on every CPU.")
        lines.append(line)
    return lines


# ------------------------------------------------------------------------------------------------------------ output


def runs_lines(runs: list[Run]) -> list[str]:
    """Where each row comes from, and the runtime versions (once when every run had the same)."""
    lines = []
    for run in runs:
        facts = [f"`{run.path}`", run.source]
        if (when := _when(run)) is not None:
            facts.append(when)
        if run.commit:
            facts.append(f"commit {run.commit}")
        if run.cpus:
            facts.append(f"{run.cpus} CPUs as the OS counts them (machine_info.cpu.count)")
        lines.append(f"- {run.label}: " + ", ".join(facts))
    keys = list(dict.fromkeys(k for run in runs for k in run.versions))
    same = [k for k in keys if len({run.versions.get(k) for run in runs}) == 1]
    if same:
        lines.append("- versions in every run: " + ", ".join(f"{k} {runs[0].versions[k]}" for k in same))
    for run in runs:
        differ = [k for k in keys if k not in same and k in run.versions]
        if differ:
            lines.append(f"- versions on {run.short}: " + ", ".join(f"{k} {run.versions[k]}" for k in differ))
    return lines


def compare_lines(runs: list[Run]) -> list[str]:
    """The whole Markdown: the runs, then one table per model with its verdicts."""
    label_runs(runs)
    models = list(dict.fromkeys(r.model for run in runs for r in run.rows))
    lines = ["# CPU inference backends across CPUs", "", *runs_lines(runs), ""]
    for model in models:
        lines += model_table(runs, model)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cpubench.compare",
        description="Merge runs of cpubench from several machines (pytest-benchmark's --benchmark-json files or "
                    "the suite's report.json) into one Markdown table per model: a CPU per row, a variant per "
                    "column, median ms and the ratio to that CPU's ONNX Runtime fp32.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN.json")
    parser.add_argument("--out", type=Path, help="also write the Markdown to this file")
    args = parser.parse_args(argv)
    try:
        runs = [load_run(path) for path in args.runs]
    except InputError as exc:
        print(f"cpubench.compare: {exc}", file=sys.stderr)
        return 2
    text = "\n".join(compare_lines(runs))
    print(text)
    if args.out is not None:
        try:
            args.out.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"cpubench.compare: {args.out}: cannot write it ({exc.strerror or exc})", file=sys.stderr)
            return 2
    return 0


# ------------------------------------------------------------------------------------------------- artifact paths

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


if __name__ == "__main__":
    sys.exit(main())
