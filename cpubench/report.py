"""The end-of-session report: the blog post's table per model, in the terminal and as Markdown, JSON and a chart."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .images import describe_class
from .models import preprocessing_note
from .versions import backend_versions

REFERENCE = "torch"  # speed-up column: the blog post compared everything to PyTorch
YARDSTICK = "onnxruntime"  # ratio column and regression gate: the fastest, steadiest backend here


@dataclass
class BenchRow:
    model: str
    backend: str
    top1: int
    timing: dict[str, float] | None  # seconds; None when timing was disabled
    context: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_loaded(cls, loaded, timing, extra) -> BenchRow:
        return cls(loaded.model, loaded.name, loaded.top1, timing, dict(extra))

    @property
    def label(self) -> str:
        """The row's name: the backend, and for tuned TVM the log it applied, e.g. `tvm-tuned (log from znver4-2c)`."""
        log = self.context.get("tuning_log_label")
        return f"{self.backend} ({log})" if log else self.backend

    def ms(self, key: str) -> float | None:
        return None if self.timing is None else self.timing[key] * 1e3


def ratios(rows: list[BenchRow], denominator: str) -> dict[tuple[str, str], float]:
    """median(backend) / median(denominator) per model, from rows of one run only."""
    base = {r.model: r.timing["median"] for r in rows if r.backend == denominator and r.timing}
    return {(r.model, r.backend): r.timing["median"] / base[r.model]
            for r in rows if r.timing and r.model in base}


def _backend_order(row: BenchRow) -> tuple[int, int]:
    from .backends import BACKENDS
    from .precision import PRECISIONS, Variant

    names, variant = list(BACKENDS), Variant.parse(row.backend)
    return (names.index(variant.backend) if variant.backend in names else len(names),
            PRECISIONS.index(variant.precision) if variant.precision in PRECISIONS else len(PRECISIONS))


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def table_lines(rows: list[BenchRow]) -> list[str]:
    """Markdown table lines, one block per model, backends in the suite's order."""
    speedup = ratios(rows, REFERENCE)
    vs_ort = ratios(rows, YARDSTICK)
    lines: list[str] = []
    for model in dict.fromkeys(r.model for r in rows):
        lines += [f"### {model}", "",
                  "| backend | precision | median ms | mean ± stddev ms | p90 ms | p99 ms | images/s "
                  "| speed-up vs torch | × onnxruntime | top-1 |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in sorted((r for r in rows if r.model == model), key=_backend_order):
            key = (r.model, r.backend)
            mean_sd = "—" if r.timing is None else f"{r.ms('mean'):.2f} ± {r.ms('stddev'):.2f}"
            lines.append(
                f"| {r.label} | {r.context.get('precision', 'fp32')} | {_fmt(r.ms('median'))} | {mean_sd} "
                f"| {_fmt(r.ms('p90'))} | {_fmt(r.ms('p99'))} "
                f"| {_fmt(r.timing['ips'] if r.timing else None, '.1f')} "
                f"| {_fmt(1 / speedup[key] if key in speedup else None, '.2f')}{'×' if key in speedup else ''} "
                f"| {_fmt(vs_ort.get(key))} | {describe_class(r.top1, r.context.get('classes', 1000))} |")
        lines += ["", verdict_line(rows, model), ""]
    return lines


def verdict_line(rows: list[BenchRow], model: str) -> str:
    """The answer in one line: the fastest backend and precision, and its margin over the runner-up and over
    ONNX Runtime in float32."""
    timed = sorted((r for r in rows if r.model == model and r.timing), key=lambda r: r.timing["median"])
    if not timed:
        return f"**{model}: no timing in this run.**"
    best = timed[0]
    line = (f"**{model}: fastest is {best.label} in {best.context.get('precision', 'fp32')}, "
            f"{best.ms('median'):.2f} ms median**")
    if len(timed) > 1:
        second = timed[1]
        line += (f"; {second.timing['median'] / best.timing['median']:.2f}× ahead of {second.label} "
                 f"({second.ms('median'):.2f} ms)")
    ort = next((r for r in timed if r.backend == YARDSTICK), None)
    if ort is not None and ort not in timed[:2]:
        line += f", {ort.timing['median'] / best.timing['median']:.2f}× faster than {YARDSTICK} fp32"
    return line + "."


def context_lines(rows: list[BenchRow], suite) -> list[str]:
    settings = suite.settings
    lines = [f"- image: `{suite.image_path.name}`; threads: {settings.threads}; batch size: {settings.batch_size}"]
    for model in dict.fromkeys(r.model for r in rows):
        built = suite.model(model)
        lines.append(f"- {model} weights: {built.weights_source}; input {preprocessing_note(built)}"
                     + "".join(f"; {note}" for note in built.notes))
    for r in rows:
        if "tuning_log" in r.context:
            agreement = ""
            if "median_vs_tuning_pct" in r.context:
                agreement = (f"; tuner measured {r.context['tuning_latency_ms']:.2f} ms, this run's median differs by "
                             f"{r.context['median_vs_tuning_pct']:+.1f}%")
            choice = r.context.get("tuning_log_choice", "")
            lines.append(f"- {r.model} {r.backend}: log `{r.context['tuning_log']}`"
                         + (f" ({choice})" if choice else "")
                         + f", {r.context.get('tuning_coverage', '?')}, target `{r.context.get('tvm_target', '?')}`"
                         + agreement)
    lines.extend(f"- {verdict}" for verdict in getattr(suite, "verdicts", []))
    versions = backend_versions()
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines


def write_report(suite, terminalreporter) -> dict[str, Path]:
    from .session import machine_summary

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
        "batch_size": suite.settings.batch_size, "image": suite.image_path.name,
        "ratios_vs_onnxruntime": {f"{m}-{b}": v for (m, b), v in ratios(rows, YARDSTICK).items()},
        "results": [asdict(r) for r in rows],
    }
    paths["json"].write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    tr.write_line("report written: " + ", ".join(str(p) for p in paths.values()))
    return paths
