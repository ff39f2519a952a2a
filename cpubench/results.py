"""One result row per variant timed in a run, and the ratios between rows, each with its interval.

Ratios come from rounds of the same rotation (neighbours in time, see schedule.py): the median of the per-rotation
ratios, with a bootstrap interval over rotations. The report, the gate and the verdicts all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .schedule import paired
from .stats import median_interval

SPEEDUP_BASELINE = "torch"  # speed-up column: the blog post compared everything to PyTorch
REFERENCE_BACKEND = "onnxruntime"  # ratio column and regression gate: the fastest, steadiest backend here


@dataclass
class BenchRow:
    model: str
    variant: str  # the variant's key: `openvino`, `openvino-bf16`
    top1: int
    timing: dict[str, float] | None  # seconds; None when timing was disabled
    context: dict[str, Any] = field(default_factory=dict)
    rounds: dict[int, float] = field(default_factory=dict)  # rotation -> seconds per call in that round
    processes: dict[int, int] = field(default_factory=dict)  # rotation -> which of its worker processes ran it

    @property
    def label(self) -> str:
        """The row's name: the variant, and for tuned TVM the log it applied, e.g. `tvm-tuned (log from znver4-2c)`."""
        log = self.context.get("tuning_log_label")
        return f"{self.variant} ({log})" if log else self.variant

    @property
    def precision(self) -> str:
        return self.context.get("precision", "fp32")

    def ms(self, key: str) -> float | None:
        return None if self.timing is None or key not in self.timing else self.timing[key] * 1e3


@dataclass(frozen=True)
class Ratio:
    """median(numerator) / median(denominator) as the median of per-rotation ratios, with its interval (bootstrap over
    the worker processes, then blocks of rotations within each)."""

    value: float
    low: float
    high: float
    pairs: int  # rotations both rows took part in; 0 when only the two medians could be divided

    def __str__(self) -> str:
        return f"{self.value:.2f}× [{self.low:.2f}, {self.high:.2f}]"

    def bare(self) -> str:
        """`1.23 [1.20, 1.25]`, for a column already headed ×."""
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"


def ratio_of(numerator: BenchRow, denominator: BenchRow) -> Ratio | None:
    if not numerator.timing or not denominator.timing:
        return None
    pairs = paired(numerator.rounds, denominator.rounds)
    if pairs:
        # Grouped by the pair of processes that ran the two rounds: the interval covers the spread between them.
        groups = [(numerator.processes.get(r, 0), denominator.processes.get(r, 0)) for r in pairs]
        return Ratio(*median_interval(list(pairs.values()), groups=groups), pairs=len(pairs))
    value = numerator.timing["median"] / denominator.timing["median"]
    return Ratio(value, value, value, 0)


def ratio_table(rows: list[BenchRow], denominator: str) -> dict[tuple[str, str], Ratio]:
    """Every timed row's Ratio to `denominator`'s row of the same model, from rows of one run only."""
    base = {r.model: r for r in rows if r.variant == denominator and r.timing}
    table = {}
    for r in rows:
        if r.timing and r.model in base:
            ratio = ratio_of(r, base[r.model])
            if ratio is not None:
                table[(r.model, r.variant)] = ratio
    return table


def fastest_and_tied(rows: list[BenchRow], reference: BenchRow | None
                     ) -> tuple[BenchRow, list[tuple[BenchRow, Ratio]]] | None:
    """The one verdict rule, of the run's report and of `python -m cpubench.compare` alike. Among `rows` (one model,
    one run), the fastest in the table's column: the ratio to `reference` (ONNX Runtime fp32), else the median when
    there is none. Then each other row tied with it, with its time over the fastest's paired per rotation: tied when
    that ratio's interval reaches 1.0, since rotation by rotation the two cannot be told apart. Two rows' intervals
    against the reference may overlap while their direct paired ratio lies clear of 1.0; that is not a tie."""
    timed = [r for r in rows if r.timing]
    if not timed:
        return None

    def column(row: BenchRow) -> float:
        ratio = ratio_of(row, reference) if reference is not None else None
        return row.timing["median"] if ratio is None else ratio.value

    ranked = sorted(timed, key=column)
    best = ranked[0]
    return best, [(r, ratio) for r in ranked[1:] if (ratio := ratio_of(r, best)) is not None and ratio.low <= 1.0]


def ratios(rows: list[BenchRow], denominator: str) -> dict[tuple[str, str], float]:
    """Just the ratios' values, per (model, variant)."""
    return {key: ratio.value for key, ratio in ratio_table(rows, denominator).items()}
