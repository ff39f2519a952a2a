"""A PNG of tuning progress: the tuner's model latency estimate over ONNX Runtime's, against minutes of tuning.

Reads the `progress` curve that `pytest -m tune` stores in a log's metadata.json (minutes since the run began,
candidates measured, Σ weight × best latency of every task) and, where present, the compiled model's latency
measured when tuning ended. Usage:

    python -m cpubench.tuning_chart docs/tuning_resnet18.png \
        docs/tuning_resnet18_warm.json:warm docs/tuning_resnet18_cold.json:cold
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .errors import UsageError


def load_curve(spec: str) -> tuple[str, dict[str, Any]]:
    path_text, _, label = spec.partition(":")
    path = Path(path_text)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a readable metadata JSON file ({exc})") from None
    if not isinstance(data, dict) or not data.get("progress"):
        raise UsageError(f"{path}: has no `progress` curve (logs tuned before it was recorded have none)")
    return label or path.parent.name, data


def write_tuning_chart(curves: list[tuple[str, dict[str, Any]]], path: Path, reference_ms: float,
                       reference: str = "onnxruntime", title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 5.2), dpi=110)
    for label, data in curves:
        # Each run's own reference, timed in the same session when it has one: absolute times drift between runs.
        reference_ms = data.get("reference_latency_ms") or reference_ms
        minutes = [p[0] for p in data["progress"]]
        ratios = [p[2] / reference_ms for p in data["progress"]]
        (line,) = ax.plot(minutes, ratios, marker=".", markersize=3, label=f"{label}: tuner's estimate")
        measured = data.get("model_latency_ms")
        total = data.get("total_seconds")
        if measured and total:
            ax.plot([total / 60], [measured / reference_ms], marker="*", markersize=12, color=line.get_color(),
                    linestyle="none", label=f"{label}: compiled model, measured ({measured / reference_ms:.2f}x)")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.axhline(1.2, color="grey", linewidth=0.8, linestyle="--")
    ax.annotate("1.2x", (ax.get_xlim()[1], 1.2), fontsize=7, ha="right", va="bottom", color="grey")
    ax.set_xlabel("minutes since `pytest -m tune` started")
    ax.set_ylabel(f"model latency / {reference}\n(timed in the same session)")
    ax.set_title(title or "Tuning progress", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpubench.tuning_chart", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("curves", nargs="+", metavar="METADATA[:LABEL]", help="metadata.json files with `progress`")
    parser.add_argument("--reference-ms", type=float, default=None,
                        help="reference latency for files that record none; default: the first recorded one")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    try:
        curves = [load_curve(spec) for spec in args.curves]
        reference_ms = args.reference_ms or next((d.get("reference_latency_ms") for _, d in curves
                                                  if d.get("reference_latency_ms")), None)
        if not reference_ms:
            raise UsageError("--reference-ms: no file records reference_latency_ms; give it")
    except UsageError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(write_tuning_chart(curves, args.out, reference_ms, title=args.title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
