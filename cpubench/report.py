"""The end-of-session report: the blog post's table per model, in the terminal and as Markdown, JSON and a chart."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import phases
from .images import describe_class
from .machine import summary as machine_summary
from .models import preprocessing_note
from .results import REFERENCE_BACKEND, SPEEDUP_BASELINE, BenchRow, fastest_and_tied, ratio_table
from .versions import backend_versions


def _backend_order(row: BenchRow) -> tuple[int, int]:
    from .backends import BACKENDS
    from .precision import PRECISIONS, Variant

    names, variant = list(BACKENDS), Variant.parse(row.variant)
    return (names.index(variant.backend) if variant.backend in names else len(names),
            PRECISIONS.index(variant.precision) if variant.precision in PRECISIONS else len(PRECISIONS))


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def _interval_ms(row: BenchRow) -> str:
    if row.timing is None:
        return "—"
    low, high = row.ms("median_low"), row.ms("median_high")
    return f"{row.ms('median'):.2f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else "")


def _per_call(row: BenchRow) -> str:
    """`9.41 / 12.30 (300)`: single calls' p50 and p99; `p99*` when fewer than TAIL_CALLS calls stand behind it."""
    from .stats import TAIL_CALLS

    c = row.context
    if not c.get("calls"):
        return "—"
    star = "*" if c["calls"] < TAIL_CALLS else ""
    return f"{c['call_p50'] * 1e3:.2f} / {c['call_p99'] * 1e3:.2f}{star} ({c['calls']})"


def _process_spread(row: BenchRow) -> str:
    """`9.40, 9.71 (3.3%)`: each worker process's median round and their spread (max / min - 1)."""
    medians = row.context.get("process_medians_ms") or []
    if len(medians) < 2:
        return "1 process" if medians else "—"
    return ", ".join(f"{m:.2f}" for m in medians) + f" ({max(medians) / min(medians) - 1:.1%})"


def _stalls(row: BenchRow) -> str:
    c = row.context
    if not c.get("calls"):
        return "—"
    return f"{c['stalled_calls']} ({c['stalled_calls'] / c['calls']:.1%})"


def stall_line(rows: list[BenchRow], resume_ms: float = 10.0) -> str | None:
    """Where stalls fall in a round: in the first `resume_ms` after the worker resumed (a cost of stopping workers
    between rounds) or evenly (the machine's)."""
    from .stats import STALL_FACTOR

    early = [0, 0]
    late = [0, 0]
    for r in rows:
        c = r.context
        if not c.get("calls") or not c.get("call_ms"):
            continue
        typical = (c["modes"][-1][0] if c.get("modes") else c["call_p50"] * 1e3)
        for calls in c["call_ms"]:
            elapsed = 0.0
            for ms in calls:
                bucket = early if elapsed < resume_ms else late
                bucket[0] += ms > STALL_FACTOR * typical
                bucket[1] += 1
                elapsed += ms
    if not early[1] or not late[1]:
        return None
    return (f"- stalled calls (over {STALL_FACTOR:g}x their variant's typical call): {early[0] + late[0]} of "
            f"{early[1] + late[1]} ({(early[0] + late[0]) / (early[1] + late[1]):.1%}); in the first {resume_ms:g} "
            f"ms of a round, just after the worker resumed: {early[0] / early[1]:.1%}, later in rounds: "
            f"{late[0] / late[1]:.1%}")


# A variant whose worker processes' medians differ by more than this is said so under the table.
PROCESS_SPREAD_FLAG = 0.10
# What is known of a backend whose speed differs from process to process (docs/design.md#pytorch-eager).
PROCESS_SPREAD_NOTES = {
    "torch": ": PyTorch eager's own, its speed changes between processes and over seconds within one, with the "
             "allocator (glibc, jemalloc, tcmalloc), OpenMP's wait policy, oneDNN and the thread count alike "
             "(docs/design.md#pytorch-eager)",
}


def speed_lines(rows: list[BenchRow], coincidences: dict[tuple[str, str], Any] | None = None) -> list[str]:
    """What the table's per-call columns mean, and a line for each variant whose calls fall into two speeds (with
    whether its slow rounds came with the other variants', from `coincidences`: phases.of_rows of the run) or whose
    worker processes ran at different speeds (by more than PROCESS_SPREAD_FLAG)."""
    from .stats import STALL_FACTOR, TAIL_CALLS

    lines = [f"Per call: percentiles of single timed calls (* under {TAIL_CALLS} calls: p99 is then the slowest call "
             f"or two). Stalled: calls over {STALL_FACTOR:g}x the variant's typical call."]
    for r in rows:
        modes = r.context.get("modes")
        if modes:
            speeds = ", ".join(f"{ms:.2f} ms {share:.0%}" for ms, share in modes)
            found = (coincidences or {}).get((r.model, r.variant))
            whose = "" if found is None else (
                f"; its slow rounds came with the other variants' ({found.said()}): the machine's slow phases"
                if found.with_machine else
                f"; whether its slow rounds came with the other variants' is not clear from its rounds "
                f"({found.said()}; chance gives as much in {found.p:.0%} of shifts)")
            lines.append(f"- **{r.label} ({r.precision}) has two speeds: {speeds}**; its median "
                         f"({r.ms('median'):.2f} ms) mixes them and is no typical call{whose}")
        medians = r.context.get("process_medians_ms") or []
        if len(medians) > 1 and max(medians) / min(medians) - 1 > PROCESS_SPREAD_FLAG:
            lines.append(f"- **{r.label} ({r.precision}) ran at different speeds in its worker processes: "
                         f"{', '.join(f'{m:.2f}' for m in medians)} ms ({max(medians) / min(medians) - 1:.0%})**; "
                         "its interval counts each process, but another run may draw other speeds"
                         + PROCESS_SPREAD_NOTES.get(r.variant.removesuffix(f"-{r.precision}"), ""))
    return lines


def _efficiency(row: BenchRow) -> str:
    """`76% [75, 77] · 48%`: the share of the best GEMM's rate with its interval, then of the float32 peak."""
    c = row.context
    if "peak_share" not in c:
        return "—"
    peak = f"{c['peak_share'] * 100:.0f}% of peak"
    if "efficiency" not in c:
        return peak
    return (f"{c['efficiency'] * 100:.0f}% [{c['efficiency_low'] * 100:.0f}, {c['efficiency_high'] * 100:.0f}] · "
            + peak)


def _agreement(row: BenchRow) -> str:
    """`36/36 (100%)`: how many evaluation images the int8 variant answers as float32 does (near-ties set apart)."""
    rate = row.context.get("int8_agreement")
    if not rate:
        return "—"
    if "error" in rate or rate.get("rate") is None:
        return "not judged"
    return f"{rate['agree']}/{rate['judged']} ({rate['rate']:.0%})"


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def yardstick_lines(suite: Any, rows: list[BenchRow]) -> list[str]:
    """What the efficiency columns are measured against: this CPU's float32 peak and each library's GEMM, with the
    kernel each ran, timed in the run's rotations; and each model's FLOPs."""
    from .yardstick import GEMMS, PEAK, rate_gflops

    kernels = suite.launcher.yardstick_kernels() if hasattr(suite, "launcher") else {}
    lines = []
    for model in dict.fromkeys(r.model for r in rows):
        c = next((r.context for r in rows if r.model == model and "peak_share" in r.context), None)
        if c is None:
            continue
        timed = suite.measurement.yardstick_rounds(model)
        parts = [f"peak {c['cpu_peak_gflops']:.0f} GFLOP/s [{c['cpu_peak_gflops_low']:.0f}, "
                 f"{c['cpu_peak_gflops_high']:.0f}] ({kernels[PEAK]['kernel']})"]
        for name in GEMMS:
            info = kernels.get(name)
            if isinstance(info, dict) and name in timed:
                best = " (best)" if name == c.get("cpu_gemm") else ""
                rate = rate_gflops(info["flops_per_call"], timed[name])[0]
                parts.append(f"{name} {rate:.0f} GFLOP/s{best} ({info['kernel']})")
            elif name in kernels:
                parts.append(f"{name} not timed ({info if isinstance(info, str) else 'no rounds'})")
        lines.append(f"- {model}: {c['model_gflop']:.2f} GFLOP a forward pass (counted on its ONNX graph, batch "
                     f"{c.get('batch_size', 1)}); this CPU in the same rotations: " + "; ".join(parts))
    return lines


def table_lines(rows: list[BenchRow]) -> list[str]:
    """Markdown tables, two per model (speed; what its own process cost), backends in the suite's order."""
    speedup = ratio_table(rows, SPEEDUP_BASELINE)
    vs_ort = ratio_table(rows, REFERENCE_BACKEND)
    coincidences = phases.of_rows(rows)
    lines: list[str] = []
    for model in dict.fromkeys(r.model for r in rows):
        ordered = sorted((r for r in rows if r.model == model), key=_backend_order)
        int8 = any(r.precision == "int8" for r in ordered)
        lines += [f"### {model}", "",
                  "| backend | precision | median ms [95% interval] | per call p50 / p99 ms (calls) | stalled calls "
                  "| images/s | rounds "
                  f"| × {REFERENCE_BACKEND} [95% interval] | % of the best fp32 GEMM · of the fp32 peak "
                  f"| speed-up vs {SPEEDUP_BASELINE} "
                  "| top-1 |" + (" same top-1 as fp32, evaluation set |" if int8 else ""),
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|" + ("---:|" if int8 else "")]
        for r in ordered:
            key = (r.model, r.variant)
            ratio = vs_ort.get(key)
            lines.append(
                f"| {r.label} | {r.precision} | {_interval_ms(r)} | {_per_call(r)} | {_stalls(r)} "
                f"| {_fmt(r.timing['ips'] if r.timing else None, '.1f')} | {r.timing['rounds'] if r.timing else '—'} "
                f"| {'—' if ratio is None else ratio.bare()} | {_efficiency(r)} "
                f"| {_fmt(1 / speedup[key].value if key in speedup else None, '.2f')}{'×' if key in speedup else ''} "
                f"| {describe_class(r.top1, r.context.get('classes', 1000))} |"
                + (f" {_agreement(r)} |" if int8 else ""))
        lines += ["", "| backend | precision | processes: median ms each (spread) | cold start s | build s "
                      "| memory after build MiB | peak while building MiB | peak while timed MiB | artifact MB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in ordered:
            c = r.context
            size = c.get("artifact_bytes")
            lines.append(f"| {r.label} | {r.precision} | {_process_spread(r)} | {_fmt(c.get('cold_start_seconds'))} "
                         f"| {_fmt(c.get('build_seconds'))} | {_mib(c.get('rss_after_build_mib'))} "
                         f"| {_mib(c.get('peak_build_mib'))} | {_mib(c.get('peak_inference_mib'))} "
                         f"| {'—' if size is None else f'{size / 1e6:.1f}'} |")
        at_once = max((r.context.get("built_at_once") or 1 for r in ordered), default=1)
        if at_once > 1:
            lines += ["", f"Cold start and build were measured {at_once} variants at a time (--build-jobs {at_once}), "
                          "not alone: they are longer than a build on an idle machine."]
        lines += [""] + speed_lines(ordered, coincidences) + ["", verdict_line(rows, model), ""]
    return lines


def verdict_line(rows: list[BenchRow], model: str) -> str:
    """The answer in one line, in the table's own column (× ONNX Runtime fp32, paired per rotation, with its
    interval), so every figure can be read off the table and recomputed from the JSON: the fastest variant, or those
    tied with it (results.fastest_and_tied, the rule `python -m cpubench.compare` uses too), and the runner-up."""
    column = ratio_table(rows, REFERENCE_BACKEND)
    timed = [r for r in rows if r.model == model and r.timing]
    if not timed:
        return f"**{model}: no timing in this run.**"
    if (model, REFERENCE_BACKEND) not in column:  # no reference backend: medians only
        best = min(timed, key=lambda r: r.timing["median"])
        return f"**{model}: fastest median is {best.label} in {best.precision}, {best.ms('median'):.2f} ms.**"
    in_column = [r for r in timed if (model, r.variant) in column]
    fastest, tied = fastest_and_tied(in_column, next(r for r in timed if r.variant == REFERENCE_BACKEND))
    ranked = sorted(in_column, key=lambda r: column[(model, r.variant)].value)

    def cell(r: BenchRow) -> str:
        return f"{r.label} in {r.precision} ({r.ms('median'):.2f} ms, {column[(model, r.variant)]})"

    unit = f"times in × {REFERENCE_BACKEND} fp32's, as in the table"
    if tied:
        line = (f"**{model}: tied for fastest: {cell(fastest)} and {', '.join(cell(r) for r, _ in tied)}**; "
                + "; ".join(f"{r.label} takes {ratio} of {fastest.label}'s time" for r, ratio in tied)
                + f", paired per rotation, an interval that reaches 1.0 ({unit})")
    else:
        line = f"**{model}: fastest is {cell(fastest)}** ({unit})"
        if len(ranked) > 1:
            line += f"; next {cell(ranked[1])}"
    if fastest.precision == "int8":
        line += f" (int8: {_gives_up(fastest)})"
    precisions = list(dict.fromkeys(r.precision for r in ranked))
    if len(precisions) > 1:
        per_precision = [next(r for r in ranked if r.precision == p) for p in precisions]
        line += ". Fastest per precision: " + "; ".join(
            f"{p} {r.label} {column[(model, r.variant)]}" + (f" ({_gives_up(r)})" if p == "int8" else "")
            for p, r in zip(precisions, per_precision, strict=True))
    return line + "."


def _gives_up(row: BenchRow) -> str:
    """What an int8 row gives up, in words: its agreement with float32 on the evaluation set."""
    rate = row.context.get("int8_agreement") or {}
    if rate.get("rate") is None:
        return "agreement with fp32 not measured"
    return (f"same top-1 as fp32 on {rate['agree']}/{rate['judged']} evaluation images, "
            f"{rate['near_ties']} near-ties set apart")


def int8_line(rows: list[BenchRow]) -> str | None:
    """How each int8 variant was quantized where it depends on the CPU (cpubench/quantize.py: int8 or uint8 weights,
    full or 7-bit activations), and the CPU's 8-bit dot product that decided it."""
    int8 = [r for r in rows if r.precision == "int8"]
    formats: dict[str, list[str]] = {}
    for r in int8:
        how = "; ".join(f"{key.removeprefix('quantization_')} {r.context[key]}"
                        for key in ("quantization_weights", "quantization_activations") if r.context.get(key))
        if how:
            formats.setdefault(how, [])
            if r.variant not in formats[how]:
                formats[how].append(r.variant)
    if not formats:
        return None
    dot = next((r.context["cpu_int8_dot_product"] for r in int8 if r.context.get("cpu_int8_dot_product")), None)
    return (f"- int8 formats (this CPU's 8-bit dot product: {dot or 'not recorded'}): "
            + "; ".join(f"{', '.join(variants)}: {how}" for how, variants in formats.items()))


def context_lines(rows: list[BenchRow], suite) -> list[str]:
    settings = suite.settings
    image = suite.store.image_path.name
    lines = [f"- image: `{image}`; threads: {settings.threads}; batch size: {settings.batch_size}"]
    for model in dict.fromkeys(r.model for r in rows):
        built = suite.store.model(model)
        lines.append(f"- {model} weights: {built.weights_source}; input {preprocessing_note(built)}"
                     + "".join(f"; {note}" for note in built.notes))
    for r in rows:
        if "tuning_log" in r.context:
            agreement = ""
            if "median_vs_tuning_pct" in r.context:
                agreement = (f"; tuner measured {r.context['tuning_latency_ms']:.2f} ms, this run's median differs by "
                             f"{r.context['median_vs_tuning_pct']:+.1f}%")
            choice = r.context.get("tuning_log_choice", "")
            lines.append(f"- {r.model} {r.variant}: log `{r.context['tuning_log']}`"
                         + (f" ({choice})" if choice else "")
                         + f", {r.context.get('tuning_coverage', '?')}, target `{r.context.get('tvm_target', '?')}`"
                         + agreement)
    lines += yardstick_lines(suite, rows)
    if int8 := int8_line(rows):
        lines.append(int8)
    slowed = [f"{r.model}-{r.variant} x{r.context['injected_slowdown']:g}" for r in rows
              if r.context.get("injected_slowdown")]
    if slowed:
        lines.append(f"- **fault injection (CPUBENCH_SLOWDOWN): {', '.join(slowed)} did that many times the work per "
                     "call on purpose; these numbers are not the backend's**")
    stalls = stall_line(rows)
    if stalls:
        lines.append(stalls)
    if slow_phases := phases.run_line(rows):
        lines.append(slow_phases)
    measurement = getattr(suite, "measurement", None)  # None: a report made from a results file
    for model, cost in (measurement.boundary if measurement else {}).items():
        timed = [r.timing["median"] for r in rows if r.model == model and r.timing]
        if not cost or not timed:
            continue
        others = measurement.timed_with.get(model, [])
        shared = f" (shared with {', '.join(others)}'s variants)" if others else ""
        share = cost["timer_seconds_per_call"] / min(timed) * 100
        trip_us = cost["round_trip_seconds"] * 1e6
        lines.append(f"- {model}: every variant in worker processes of its own ({processes_summary(rows, model)}), "
                     f"timed in interleaved rotations of {settings.round_ms} ms rounds{shared}; the process boundary "
                     f"costs {trip_us:.0f} µs a round trip, "
                     "paid between rounds and in no sample (each worker times its own calls); the "
                     f"timing loop adds {cost['timer_seconds_per_call'] * 1e6:.2f} µs a call, {share:.3f}% of the "
                     "fastest median")
    loads = {model: load.describe() for model, load in getattr(measurement, "load", {}).items()}
    for text in dict.fromkeys(loads.values()):  # models timed together share one line
        models = [model for model, said in loads.items() if said == text]
        lines.append(f"- while {' and '.join(models)} {'were' if len(models) > 1 else 'was'} timed: {text}")
    lines.extend(f"- {verdict}" for verdict in getattr(suite, "verdicts", []))
    versions = backend_versions()
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines


def write_report(suite, terminalreporter) -> dict[str, Path]:
    rows: list[BenchRow] = suite.results
    out_dir: Path = suite.settings.results_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_summary()
    header = f"CPU inference backends on {machine['cpu_name']} ({time.strftime('%Y-%m-%d %H:%M')})"
    body = table_lines(rows)
    context = context_lines(rows, suite)

    tr = terminalreporter
    tr.write_sep("=", "cpubench report")
    tr.write_line(header)
    for line in body + context:
        tr.write_line(line)

    paths = {"markdown": out_dir / "report.md", "json": out_dir / "report.json"}
    markdown = [f"# {header}", "", *body, *context, ""]
    chart = None
    if any(r.timing for r in rows):
        from .chart import write_chart

        chart = write_chart(rows, out_dir / "latency.png")
    if chart is not None:
        paths["chart"] = chart
        markdown[2:2] = [f"![median latency per backend]({chart.name})", ""]
    paths["markdown"].write_text("\n".join(markdown), encoding="utf-8")
    payload = {
        "machine": machine, "versions": backend_versions(), "threads": suite.settings.threads,
        "batch_size": suite.settings.batch_size, "image": suite.store.image_path.name,
        "ratios_vs_onnxruntime": {f"{m}-{b}": asdict(v) for (m, b), v in ratio_table(rows, REFERENCE_BACKEND).items()},
        "process_boundary": suite.measurement.boundary if hasattr(suite, "measurement") else {},
        "machine_load": {model: asdict(load) for model, load in getattr(getattr(suite, "measurement", None), "load",
                                                                        {}).items()},
        "results": [asdict(r) for r in rows],
    }
    paths["json"].write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    tr.write_line("report written: " + ", ".join(str(p) for p in paths.values()))
    return paths


def processes_summary(rows: list[BenchRow], model: str) -> str:
    """`2 per variant taking its rounds in turn; onnxruntime 3, tvm 1`: how many worker processes timed each row."""
    from collections import Counter

    counts = {r.variant: int(r.context.get("timing_processes", 1)) for r in rows if r.model == model and r.timing}
    if not counts:
        return "none timed"
    usual = Counter(counts.values()).most_common(1)[0][0]
    others = ", ".join(f"{name} {count}" for name, count in counts.items() if count != usual)
    turns = " taking its rounds in turn" if usual > 1 else ""
    return f"{usual} per variant{turns}" + (f"; {others}" if others else "")
