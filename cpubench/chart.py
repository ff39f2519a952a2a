"""A PNG chart next to the report: median latency per backend per model, p90 whiskers, log scale when needed."""

from __future__ import annotations

from pathlib import Path

# Above this max/min spread of medians a linear axis squashes the fast backends into one pixel.
LOG_SCALE_SPREAD = 20.0


def write_chart(rows, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no screen on CI machines
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r.timing]
    models = list(dict.fromkeys(r.model for r in timed))
    backends = list(dict.fromkeys(r.backend for r in timed))
    width = 0.8 / max(1, len(backends))
    # Wide enough for every bar, never wider than a page; 20 distinct colours so no two backends share one.
    fig, ax = plt.subplots(figsize=(min(13.0, 3.0 + 0.45 * len(models) * max(1, len(backends))), 4.6), dpi=120)
    colours = plt.get_cmap("tab20").colors
    medians = [r.ms("median") for r in timed]
    log_scale = max(medians) / max(min(medians), 1e-9) > LOG_SCALE_SPREAD
    for b_index, backend in enumerate(backends):
        xs, heights, upper = [], [], []
        for m_index, model in enumerate(models):
            row = next((r for r in timed if r.model == model and r.backend == backend), None)
            if row is None:
                continue
            xs.append(m_index + (b_index - (len(backends) - 1) / 2) * width)
            heights.append(row.ms("median"))
            upper.append(row.ms("p90") - row.ms("median"))
        bars = ax.bar(xs, heights, width * 0.92, label=backend, yerr=[[0] * len(upper), upper], capsize=3,
                      color=colours[b_index % len(colours)])
        for bar, value in zip(bars, heights, strict=False):
            ax.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(models)), models)
    if log_scale:
        ax.set_yscale("log")
    ax.set_ylabel("median latency, ms" + (" (log scale)" if log_scale else "") + "; whisker: p90")
    ax.set_title(f"Inference latency, batch {timed[0].context.get('batch_size', 1)}, "
                 f"{timed[0].context.get('threads', '?')} threads (lower is better)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
