"""Runs of this suite on several CPUs merged into one table per model, a CPU per row and a variant per column, like
the blog post's table: `python -m cpubench.compare RUN.json [RUN.json ...] [--out FILE]`."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from .precision import BF16_CPU_FLAGS, PRECISIONS, Variant
from .report import int8_line
from .results import REFERENCE_BACKEND, BenchRow, Ratio, fastest_and_tied, ratio_of
from .results_files import InputError, Run, load_run

# Flags in a file's `cpu_flags_bf16_amx_vnni` that mean native bfloat16, on any architecture (the suite skips bf16
# without them).
BF16_FLAGS = tuple(flag for flags in BF16_CPU_FLAGS.values() for flag in flags)
ISA_NAMES = {"avx512": "AVX-512", "avx2": "AVX2", "avx": "AVX", "sse4": "SSE4", "sve": "SVE", "neon": "NEON"}
NO_PAIRING = "†"  # marks a ratio of two medians, where the rounds could not be paired by rotation


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
        if formats := int8_line([row for row in run.rows if row.model == model]):  # int8 by the CPU (quantize.py)
            notes.append(f"{run.short} {formats.removeprefix('- ')}.")
    lines.append("")
    if notes:
        lines += [*notes, ""]
    lines += verdict_lines(shown, model)
    return lines + [""]


# ---------------------------------------------------------------------------------------------------------- verdicts


def _fastest(run: Run, model: str, precision: str) -> tuple[BenchRow, list[tuple[BenchRow, Ratio]]] | None:
    """The fastest row of `precision` and those tied with it, by the report's own rule (results.fastest_and_tied)."""
    rows = [r for r in run.rows if r.model == model and _split(r.variant)[1] == precision]
    return fastest_and_tied(rows, run.row(model, REFERENCE_BACKEND))


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
                text += ", tied with " + " and ".join(f"{_name(r)} ({ratio} of its time)" for r, ratio in tied)
            parts.append(text)
            winners.append({_split(r.variant)[0] for r in (best, *(r for r, _ in tied))})
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


if __name__ == "__main__":
    sys.exit(main())
