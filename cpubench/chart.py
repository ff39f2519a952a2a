"""A PNG chart next to the report: per model, its variants fastest first, each median with its 95% interval, coloured
by precision and labelled by backend, on a log axis when the medians span more than LOG_SCALE_SPREAD."""

from __future__ import annotations

from pathlib import Path

# Above this max/min spread of medians a linear axis squashes the fast variants into one pixel.
LOG_SCALE_SPREAD = 20.0
PRECISION_COLOURS = {"fp32": "#1f77b4", "bf16": "#ff7f0e", "int8": "#2ca02c"}


def write_chart(rows, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no screen on CI machines
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    timed = [r for r in rows if r.timing]
    models = list(dict.fromkeys(r.model for r in timed))
    counts = [sum(r.model == m for r in timed) for m in models]
    fig, axes = plt.subplots(len(models), 1, figsize=(8.5, 1.2 + sum(0.28 * c + 0.6 for c in counts)), dpi=120,
                             squeeze=False, gridspec_kw={"height_ratios": [max(1, c) for c in counts]})
    for ax, model in zip(axes[:, 0], models, strict=True):
        ordered = sorted((r for r in timed if r.model == model), key=lambda r: r.timing["median"])
        medians = [r.ms("median") for r in ordered]
        lows = [r.ms("median") - (r.ms("median_low") or r.ms("median")) for r in ordered]
        highs = [(r.ms("median_high") or r.ms("median")) - r.ms("median") for r in ordered]
        ys = list(range(len(ordered)))
        colours = [PRECISION_COLOURS.get(r.precision, "#7f7f7f") for r in ordered]
        ax.barh(ys, medians, color=colours, height=0.7, xerr=[lows, highs], capsize=2,
                error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
        for y, value in zip(ys, medians, strict=True):
            ax.annotate(f"{value:.2f} ms", (value, y), va="center", fontsize=7, xytext=(4, 0),
                        textcoords="offset points")
        ax.set_yticks(ys, [f"{r.label.replace('-' + r.precision, '')} · {r.precision}" for r in ordered], fontsize=7)
        ax.invert_yaxis()  # fastest on top
        if max(medians) / max(min(medians), 1e-9) > LOG_SCALE_SPREAD:
            ax.set_xscale("log")
        ax.set_xlim(right=max(medians) * (3 if ax.get_xscale() == "log" else 1.25))
        ax.set_title(f"{model}: median latency per call, fastest first (bars: 95% interval)", fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3, which="both")
    axes[-1, 0].set_xlabel(f"ms, batch {timed[0].context.get('batch_size', 1)}, "
                           f"{timed[0].context.get('threads', '?')} threads (lower is better)")
    present = [p for p in PRECISION_COLOURS if any(r.precision == p for r in timed)]
    axes[0, 0].legend(handles=[Patch(color=PRECISION_COLOURS[p], label=p) for p in present], fontsize=7,
                      loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
