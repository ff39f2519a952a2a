"""The regression gate's decision on one model's rows, sequential (as MLPerf's early stopping): a variant passes when
its interval lies inside its band, fails when it lies outside after at least one more look; in between, its rounds
and ONNX Runtime's are timed again and pooled, up to a cap where the median decides. Also ONNX Runtime's floor
against the CPU's peak and no float32 variant above that peak. The bands come from gate.py."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .gate import Band, Expectations
from .results import REFERENCE_BACKEND, BenchRow, Ratio
from .schedule import paired

# float32 above the physical peak did less arithmetic than the model asks for; measured peaks stay within a few
# percent of the nominal one, so the whole interval must be above it.
IMPLAUSIBLE_PEAK_SHARE = 1.0
# The sequential test: at most EXTENSIONS more looks of EXTENSION_SECONDS of rounds per variant each.
EXTENSIONS = 3
EXTENSION_SECONDS = 1.0
# A slower ONNX Runtime lowers every other variant's ratio by the same factor: a floor failure stands only when the
# typical variant's ratio (the median over variants of ratio / its band's expected value) fell below this too, or
# when no other variant was timed. ONNX Runtime's share of the peak alone moves with the machine (a model that waits
# on memory beside a kernel that does not): on the Zen 5, EfficientNet-Lite0's was 62%, 51% and 45% in three stored
# runs and 38% in a slow CI hour, while the ratios held.
CORROBORATING_DROP = 1 / 1.1
# A variant whose worker processes ran this far apart in one run (the slowest's median over the fastest's, less 1) is
# not judged: a slower build slows every process alike, while a process's own placement (its memory, its threads)
# can halve its speed for its whole life. On the Zen 5, EfficientNet-Lite0's litert-int8 ran at 4.80 and 2.22 ms in
# its two processes in one CI run, 0.82x ONNX Runtime in the run before; processes of the same variant otherwise
# differ by 1-12%.
PROCESS_SPLIT = 0.5


PASS, FAIL, MORE = "pass", "fail", "more"


def decide_ratio(interval: Ratio, band: Band, first_look: bool = False) -> str:
    """Pass inside the band's top, fail above it; straddling (or outside on the first look) asks for more."""
    if interval.high <= band.high:
        return PASS
    if interval.low > band.high and not first_look:
        return FAIL
    return MORE


def decide_floor(interval: Ratio, band: Band, first_look: bool = False) -> str:
    if interval.low >= band.low:
        return PASS
    if interval.high < band.low and not first_look:
        return FAIL
    return MORE


def typical_ratio_change(pairs: dict[str, list[float]], expectations: Expectations) -> float | None:
    """The median over variants of their median ratio / their band's expected value; None with no variant."""
    changes = [statistics.median(values) / expectations.ratios[variant].expected
               for variant, values in pairs.items() if values and expectations.ratios[variant].expected > 0]
    return statistics.median(changes) if changes else None


def implausible_ceiling(row: BenchRow) -> float:
    """The share of the peak above which a float32 row did less arithmetic than its model asks for: the peak, times
    what skipping the padded taps saves (flops.padding_allowance: OpenVINO's brgemm convolutions read 100.4% of a
    Zen 4's one-thread peak on ResNet18, 7.4% of whose counted FLOPs fall on padding), times, for a Winograd build,
    what it saves on the model's eligible convolutions (flops.winograd_allowance)."""
    from .winograd import WINOGRAD

    allowance = row.context.get("winograd_allowance", 1.0) if row.context.get("tvm_lowering") == WINOGRAD else 1.0
    return IMPLAUSIBLE_PEAK_SHARE * row.context.get("padding_allowance", 1.0) * allowance


@dataclass
class Finding:
    model: str
    variant: str
    kind: str  # "ratio", "floor", "floor_held", "implausible", "missing", "faster"
    found: Ratio | None
    band: Band | None
    looks: int = 1
    note: str = ""

    def __str__(self) -> str:
        where = f"{self.model}-{self.variant}"
        looks = f" after {self.looks} looks" if self.looks > 1 else ""
        if self.kind == "missing":
            return f"{where}: no timing in this run ({self.note}), expected {self.band.describe()}"
        if self.kind == "floor":
            return (f"{where}: runs at {self.found.value:.0%} [{self.found.low:.0%}, {self.found.high:.0%}] of this "
                    f"CPU's float32 peak{looks}, below its floor {self.band.low:.0%} (expected {self.band.expected:.0%}"
                    f", {self.band.origin}): {REFERENCE_BACKEND} itself (or its export) is slower")
        if self.kind == "floor_held":
            return (f"{where}: runs at {self.found.value:.0%} [{self.found.low:.0%}, {self.found.high:.0%}] of this "
                    f"CPU's float32 peak{looks}, under its floor {self.band.low:.0%}, but the other variants' ratios "
                    f"held ({self.note} of their stored values; a slower {REFERENCE_BACKEND} would lower them alike): "
                    "the machine ran it slower this time, not failed")
        if self.kind == "implausible":
            return (f"{where}: its median runs at {self.found.value:.0%} of this CPU's float32 peak (the peak "
                    f"kernel's fastest rounds), implausible for float32 (at most {self.note}): it ran in lower "
                    "precision or skipped work")
        if self.kind == "faster":
            return (f"{where}: {self.found}{looks} is faster than stored ({self.band.describe()}): update the bands? "
                    "(`pytest benches/ --gate-update`)")
        return (f"{where}: {self.found} {REFERENCE_BACKEND}{looks}, above its band {self.band.describe()}: "
                "slower than stored")


@dataclass
class GateOutcome:
    failures: list[Finding] = field(default_factory=list)
    notices: list[Finding] = field(default_factory=list)  # faster than stored
    checked: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def unchecked_said(self) -> list[str]:
        """`unchecked` as the verdict says it: variants skipped for one reason share one entry (`a, b and c not
        checked (skipped: ...)`), so a reason said for every bf16 variant of a CPU without bf16 is said once."""
        skipped = " not checked (skipped: "
        groups: dict[str, list[str]] = {}
        for line in self.unchecked:
            name, sep, why = line.partition(skipped)
            groups.setdefault(why if sep else line, []).append(name if sep else line)
        said = []
        for why, names in groups.items():
            if names == [why]:  # not a skipped variant
                said.append(why)
            else:
                listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
                said.append(f"{listed}{skipped}{why}")
        return said


def run_gate(model: str, rows: list[BenchRow], expectations: Expectations, selected: tuple[str, ...],
             excused: dict[str, str], floor_shares: list[float], retime: Any = None,
             extensions: int = EXTENSIONS) -> GateOutcome:
    """Judge one model's rows. `floor_shares`: ONNX Runtime's share of the peak per rotation. `retime(variants)`
    times the undecided variants again with ONNX Runtime and the peak, interleaved, and returns their paired ratios
    ({variant: [...]}) and ONNX Runtime's shares ({"peak_share": [...]}); with None, what was measured decides
    (the median, as at the cap)."""
    from .precision import Variant
    from .stats import median_interval

    outcome = GateOutcome()
    timed = {r.variant: r for r in rows if r.timing}
    reference = timed.get(REFERENCE_BACKEND)
    pairs: dict[str, list[float]] = {}
    for variant in selected:
        if variant == REFERENCE_BACKEND:
            continue
        band = expectations.ratios.get(variant)
        if variant not in timed:
            if variant in excused:
                outcome.unchecked.append(f"{model}-{variant} not checked ({excused[variant]})")
            elif band is not None:
                outcome.failures.append(Finding(model, variant, "missing", None, band, note="build failed or skipped"))
            else:
                outcome.unchecked.append(f"{model}-{variant} not checked (no timing and no band)")
            continue
        if band is None:
            outcome.unchecked.append(f"{model}-{variant} not checked (no band for it)")
            continue
        row = timed[variant]
        medians = row.context.get("process_medians_ms") or []
        if len(medians) > 1 and min(medians) > 0 and max(medians) / min(medians) - 1 > PROCESS_SPLIT:
            outcome.unchecked.append(
                f"{model}-{variant} not checked (its worker processes ran at {', '.join(f'{m:.2f}' for m in medians)} "
                "ms: a process's placement, not its build, which would slow every process; rerun to check it)")
            continue
        ratios = list(paired(row.rounds, reference.rounds).values()) if reference is not None else []
        if not ratios:
            outcome.unchecked.append(f"{model}-{variant} not checked (no round paired with {REFERENCE_BACKEND}'s)")
            continue
        pairs[variant] = ratios
    floor_shares = list(floor_shares)

    def interval(values: list[float]) -> Ratio:
        return Ratio(*median_interval(values), pairs=len(values))

    looks = 1
    pending = dict.fromkeys(pairs)
    floor_pending = expectations.floor is not None and bool(floor_shares)
    while True:
        undecided = []
        for variant in [v for v, decided in pending.items() if decided is None]:  # each keeps its own looks
            verdict = decide_ratio(interval(pairs[variant]), expectations.ratios[variant], first_look=looks == 1)
            if verdict == MORE and (retime is None or looks > extensions):
                verdict = FAIL if statistics.median(pairs[variant]) > expectations.ratios[variant].high else PASS
            if verdict == MORE:
                undecided.append(variant)
            else:
                pending[variant] = (verdict, looks)
        floor_verdict = None
        if floor_pending:
            floor_verdict = decide_floor(interval(floor_shares), expectations.floor, first_look=looks == 1)
            if floor_verdict == MORE and (retime is None or looks > extensions):
                floor_verdict = FAIL if statistics.median(floor_shares) < expectations.floor.low else PASS
        if not undecided and floor_verdict != MORE:
            break
        more = retime(undecided)
        looks += 1
        for variant in undecided:
            pairs[variant] += more.get(variant, [])
        floor_shares += more.get("peak_share", [])
    for variant, (verdict, when) in ((v, pending[v]) for v in pairs):
        found, band = interval(pairs[variant]), expectations.ratios[variant]
        outcome.checked.append(f"{model}-{variant} {found} (≤ {band.high:.3g}x, {band.origin}"
                               + (f", {when} looks" if when > 1 else "") + ")")
        if verdict == FAIL:
            outcome.failures.append(Finding(model, variant, "ratio", found, band, when))
        elif found.high < band.low and band.origin == "own":  # borrowed bands are wide both ways: no notice
            outcome.notices.append(Finding(model, variant, "faster", found, band, when))
    if reference is not None:
        if floor_pending:
            found, band = interval(floor_shares), expectations.floor
            outcome.checked.append(f"{model}-{REFERENCE_BACKEND} {found.value:.0%} [{found.low:.0%}, {found.high:.0%}]"
                                   f" of the peak (≥ {band.low:.0%}, {band.origin})")
            typical = typical_ratio_change(pairs, expectations)
            if floor_verdict == FAIL and typical is not None and typical > CORROBORATING_DROP:
                outcome.notices.append(Finding(model, REFERENCE_BACKEND, "floor_held", found, band, looks,
                                               note=f"typically {typical:.2f}x"))
            elif floor_verdict == FAIL:
                outcome.failures.append(Finding(model, REFERENCE_BACKEND, "floor", found, band, looks))
            elif band.margin and found.low > band.high:
                outcome.notices.append(Finding(model, REFERENCE_BACKEND, "faster", found, band, looks))
        elif expectations.floor is None:
            outcome.unchecked.append(f"{model}-{REFERENCE_BACKEND} floor not checked ({expectations.floor_note})")
        else:
            outcome.failures.append(Finding(model, REFERENCE_BACKEND, "missing", None, expectations.floor,
                                            note="no share of the peak: the yardstick's peak kernel has no timing"))
    for row in rows:
        # Against the peak's fastest rounds (the machine's peak: another load only slows the kernel), the
        # variant's median; rows measured before that key existed fall back on the paired interval's low end.
        share = row.context.get("best_peak_share", row.context.get("peak_share_low"))
        if share is None or Variant.parse(row.variant).precision != "fp32":
            continue
        ceiling = implausible_ceiling(row)
        if share > ceiling:
            found = Ratio(share, share, share, 0)
            outcome.failures.append(Finding(model, row.variant, "implausible", found, None, note=f"{ceiling:.0%}"))
    return outcome
