"""The regression gate's expectations: each machine's stored runs (benches/ratios.json) and the bands made from them,
widened where the machine, thread count or CPU differs. gate_decision.py holds a run's rows to them; gate_judge.py
runs that on a session.

What is held:
- every variant's ratio to ONNX Runtime (paired per rotation) below its band's top; far below its band's bottom is
  reported ("faster than stored: update the bands?");
- ONNX Runtime itself above a floor of its share of this CPU's float32 peak (yardstick.py), a kernel nothing under
  test can slow: ONNX Runtime made slower from outside fails here, while every ratio would only drop;
- no float32 variant above the physical peak (allowing for the multiplications a Winograd build saves).

How it decides: gate_decision.py. Bands come from measured run-to-run spread (`--gate-update` keeps the last runs
per variant), widened where the machine, thread count or CPU differs from where they were measured.

benches/ratios.json holds the bands per machine (`<llvm cpu>-<threads>t-b<batch>`); the README states the
contract and docs/gate_power.json the measured detection and false-alarm counts.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .results import REFERENCE_BACKEND, BenchRow

FORMAT = 2
# A band's half-width: its spread times (MARGIN_PER_SPREAD + MARGIN_PER_SPREAD / runs), within [MIN_MARGIN,
# MAX_MARGIN]; MAX_MARGIN while fewer than MIN_RUNS runs are stored. The spread is the largest deviation of a stored
# run from the runs' median, or the machine's (the median of that over every variant of the model it stores), if
# larger: three runs that happen to agree say little about a variant's next run, the machine's other variants say
# more. The factor grows for few runs because the largest of 3 deviations understates the spread more than the
# largest of 10 does. MAX_MARGIN keeps a 1.5x slowdown outside the band (1.5 / 1.3 = 1.15).
MARGIN_PER_SPREAD = 1.5
MIN_MARGIN = 0.10
MAX_MARGIN = 0.30
MIN_RUNS = 3
# Runs stored on one day come from one host, and a machine of the same LLVM CPU name on another host runs at other
# ratios. Two AMD EPYC Zen 3 hosts, full runs four days apart (the code changed between them too): ratios to ONNX
# Runtime moved by up to 14% (torch.compile, ExecuTorch, int8), PyTorch eager's by 23%, ONNX Runtime's share of the
# peak by 17% (ResNet18) and 28% (EfficientNet-Lite0) (docs/results_znver3.json, docs/results_znver3_2026-12-03.json).
# So a band whose runs were all stored on one day keeps MAX_MARGIN, as if it had fewer than MIN_RUNS, until runs of
# another day join them. Three Zen 4 runs an hour apart held ONNX Runtime's ResNet18 at 90-91% of the peak: with
# MIN_MARGIN its floor was 82%, which a host 17% lower in that share would fail on an unchanged build.
ONE_DAY = "stored_on"
MAX_RUNS = 10  # runs kept per variant: the newest
# Where the band was not measured on this machine and thread count, it widens by what moves ratios between them.
# Same CPU, other thread count: OTHER_THREADS_MARGIN more for every doubling or halving of the threads (README,
# "On other core counts and CPUs"). Ratios moved by up to 21% between 1 and 2 threads on a Zen 5 and by up to 60% on
# a Zen 3 (torch.compile fp32: EfficientNet-Lite0 3.69x at 1 thread against 2.30x stored at 2; docs/gate_znver3.txt),
# which 0.25 did not cover. ONNX Runtime's share of the peak falls
# as threads grow at batch 1 (a forward pass has only so much parallel work), so its floor is also divided by the
# square root of the thread ratio when this machine runs more threads than the stored one.
OTHER_THREADS_MARGIN = 0.5
# Another CPU: ratios to ONNX Runtime move 1.3-1.5x between CPUs (PyTorch eager 1.35 on Zen 4, 2.0 on an AMX Xeon;
# tuned TVM 0.88 with its own log, 1.51 with a transferred one), so another CPU's band only catches a collapse.
OTHER_CPU_FACTOR = 2.0
# For a model no stored machine knows: bounds that hold on any CPU for a backend that works as intended. Untuned TVM
# runs naive loops (100-200x); its bound only catches a collapse such as threads fighting each other.
DEFAULT_BOUNDS = {"tvm-tuned": 3.0, "torch": 8.0, "torch-compile": 8.0, "openvino": 8.0, "executorch": 8.0,
                  "litert": 8.0, "tvm": 1000.0}
# ONNX Runtime's int8 with no band of its own, on a CPU with an 8-bit dot product (VNNI, AMX): faster than its own
# float32, or it is not running integer kernels (0.32-0.55x measured on an AMX Xeon, 0.34-0.48x on a Zen 5). Other
# backends' int8 is held to their fp32 band.
INT8_BOUND = 1.0
# Without one, int8 runs uint8 weights (U8U8, cpubench/quantize.py), which need not beat float32: on an AMD Zen 3
# EfficientNet-Lite0 ran at 7.3-7.6x ONNX Runtime fp32, ResNet18 at 0.78x (docs/int8_without_vnni/). About twice the
# slowest measured, as for another CPU's band (OTHER_CPU_FACTOR): it catches only a collapse.
INT8_BOUND_WITHOUT_DOT_PRODUCT = 16.0
# ONNX Runtime's share of the float32 peak for a model no stored machine knows: only a collapse (a model that does
# real arithmetic runs at 20-80% of the peak in ONNX Runtime: 75% ResNet18, 30% EfficientNet-Lite0 on a Zen 5).
# Below MIN_FLOOR_GFLOP a forward pass is too small for a FLOP floor (its time is call overhead): said, not checked.
GENERIC_PEAK_SHARE_FLOOR = 0.02
MIN_FLOOR_GFLOP = 0.1


@dataclass(frozen=True)
class Band:
    """What one variant's ratio (or ONNX Runtime's peak share) is held to, and where that comes from."""

    expected: float
    margin: float
    origin: str  # "own", "same CPU at 2 threads", "other CPUs", "default", ...
    runs: int = 0
    one_day: bool = False  # every stored run was stored on one day: widened to MAX_MARGIN (see ONE_DAY)

    @property
    def high(self) -> float:
        return self.expected * (1 + self.margin)

    @property
    def low(self) -> float:
        return self.expected / (1 + self.margin)

    def describe(self) -> str:
        runs = f", {self.runs} runs{' stored on one day' if self.one_day else ''}" if self.runs else ""
        return f"[{self.low:.3g}, {self.high:.3g}] ({self.origin}{runs})"


@dataclass(frozen=True)
class Expectations:
    """The bands of one model's variants and ONNX Runtime's floor on this machine, with where each comes from."""

    ratios: dict[str, Band]
    floor: Band | None  # ONNX Runtime's share of the peak; its `low` is the floor
    floor_note: str = ""  # why there is no floor (None), said in the verdict
    own: frozenset[str] = frozenset()


def machine_key(threads: int, batch_size: int) -> str:
    from .machine import gate_key

    return gate_key(threads, batch_size)


def split_key(key: str) -> tuple[str, int, int] | None:
    """(cpu, threads, batch) of `znver5-2t-b1`."""
    cpu, _, rest = key.rpartition("-")
    cpu2, _, threads = cpu.rpartition("-")
    if not (rest.startswith("b") and threads.endswith("t") and threads[:-1].isdigit() and rest[1:].isdigit()):
        return None
    return cpu2, int(threads[:-1]), int(rest[1:])


def spread_of(runs: list[float]) -> float:
    """The largest deviation of a run from the runs' median, as a share of it."""
    expected = statistics.median(runs)
    return max(abs(value / expected - 1) for value in runs) if expected else 0.0


def machine_spread(entry: dict[str, Any], model: str) -> float:
    """How far a run of this machine strays for a typical variant of `model`: the median spread of the variants
    with at least MIN_RUNS stored runs."""
    spreads = [spread_of(band["runs"]) for band in entry.get("models", {}).get(model, {}).get("ratios", {}).values()
               if len(band.get("runs", [])) >= MIN_RUNS]
    return statistics.median(spreads) if spreads else 0.0


def stored_on_one_day(entry: dict[str, Any]) -> bool:
    """Whether every run of a machine's entry was stored on one day (`stored_on`, which `update` keeps). An entry
    from before it was kept says nothing and is not widened."""
    days = entry.get(ONE_DAY)
    return isinstance(days, list) and len(set(days)) == 1


def band_from_runs(runs: list[float], origin: str = "own", typical_spread: float = 0.0,
                   one_day: bool = False) -> Band:
    """A band from stored runs: their median, and a margin from their spread or the machine's, if larger;
    MAX_MARGIN for fewer than MIN_RUNS runs or runs all stored on one day (ONE_DAY)."""
    expected = statistics.median(runs)
    if len(runs) < MIN_RUNS or one_day:
        return Band(expected, MAX_MARGIN, origin, len(runs), one_day and len(runs) >= MIN_RUNS)
    spread = max(spread_of(runs), typical_spread)
    factor = MARGIN_PER_SPREAD + MARGIN_PER_SPREAD / len(runs)
    return Band(expected, min(MAX_MARGIN, max(MIN_MARGIN, factor * spread)), origin, len(runs))


# --- the file --------------------------------------------------------------------------------------------------


def load_expected(path: Path) -> dict[str, Any]:
    """benches/ratios.json in the current format; an older file's ratios are read as single runs (their efficiency
    was against numpy's GEMM, not the peak, and is dropped)."""
    if not path.exists():
        return {"format": FORMAT, "machines": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--gate-file: {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("machines", {}), dict):
        raise UsageError(f"--gate-file: {path} should hold {{\"machines\": {{...}}}}")
    machines = {}
    for key, entry in data.get("machines", {}).items():
        if not isinstance(entry, dict):
            raise UsageError(f"--gate-file: {path}: machine {key!r} should be an object")
        machines[key] = entry if data.get("format") == FORMAT else _from_format_1(entry)
    return {"format": FORMAT, "machines": machines}


def _from_format_1(entry: dict[str, Any]) -> dict[str, Any]:
    models: dict[str, Any] = {}
    for model, bands in entry.get("ratios", {}).items():
        models[model] = {"ratios": {variant: {"runs": [band["expected"]]} for variant, band in bands.items()}}
    info = {k: v for k, v in entry.items() if k not in ("ratios", "efficiency")}
    return {**info, "models": models}


def _runs(entry: dict[str, Any], model: str, kind: str, variant: str) -> list[float]:
    return list(entry.get("models", {}).get(model, {}).get(kind, {}).get(variant, {}).get("runs", []))


# --- expectations ----------------------------------------------------------------------------------------------


def expectations_for(data: dict[str, Any], key: str, model: str, variants: tuple[str, ...],
                     bf16_kind: str | None = None, vector_isa: str | None = None,
                     model_gflop: float | None = None, int8_dot_product: bool | None = None) -> Expectations:
    """Every selected variant's band on this machine: its own stored runs; else the same CPU at another thread
    count (nearest, widened by OTHER_THREADS_MARGIN); else other CPUs of the same vector ISA (and, for bf16, the
    same bf16 hardware), the slowest of them x OTHER_CPU_FACTOR; else DEFAULT_BOUNDS. int8 is compared only on its
    own CPU (it hangs on VNNI and AMX): elsewhere ONNX Runtime's int8 must beat its fp32 (INT8_BOUND; without an 8-bit
    dot product, INT8_BOUND_WITHOUT_DOT_PRODUCT) and the others are held to their backend's fp32 band. ONNX Runtime's
    floor comes the same way."""
    from .machine import bf16_class, host_profile
    from .precision import Variant
    from .quantize import int8_dot_product as dot_product_here

    if int8_dot_product is None:
        int8_dot_product = bool(dot_product_here())
    bf16_kind = bf16_kind or bf16_class()
    vector_isa = vector_isa or host_profile().vector_isa
    machines: dict[str, Any] = data.get("machines", {})
    here = split_key(key)
    own = machines.get(key, {})
    same_cpu = sorted((abs(math.log2(parts[1] / here[1])), name) for name in machines if name != key
                      and (parts := split_key(name)) and here and parts[0] == here[0] and parts[2] == here[2])
    # Other CPUs: those with the same vector ISA when any is stored, else every other CPU (same batch size).
    others = [name for name in sorted(machines) if name != key and (parts := split_key(name)) and here
              and parts[0] != here[0] and parts[2] == here[2]]
    others = [name for name in others if machines[name].get("vector_isa") == vector_isa] or others

    def lookup(kind: str, variant: str, int8_own_cpu_only: bool) -> Band | None:
        if runs := _runs(own, model, kind, variant):
            return band_from_runs(runs, typical_spread=machine_spread(own, model), one_day=stored_on_one_day(own))
        for octaves, name in same_cpu:
            if runs := _runs(machines[name], model, kind, variant):
                band = band_from_runs(runs, typical_spread=machine_spread(machines[name], model),
                                      one_day=stored_on_one_day(machines[name]))
                margin = band.margin + OTHER_THREADS_MARGIN * octaves
                stored_threads = split_key(name)[1]
                if kind == "peak_share" and here[1] > stored_threads:
                    margin = (1 + margin) * math.sqrt(here[1] / stored_threads) - 1
                return Band(band.expected, margin, f"same CPU at {stored_threads} threads", band.runs)
        if int8_own_cpu_only:
            return None
        found = []
        for name in others:
            if Variant.parse(variant).precision == "bf16" and machines[name].get("bf16_class") != bf16_kind:
                continue
            if runs := _runs(machines[name], model, kind, variant):
                found.append((statistics.median(runs), name))
        if not found:
            return None
        worst = max(value for value, _ in found) if kind == "ratios" else min(value for value, _ in found)
        # A band of width OTHER_CPU_FACTOR: high = worst x factor (ratios), low = worst / factor (the floor).
        return Band(worst, OTHER_CPU_FACTOR - 1, "other CPUs: " + ", ".join(name for _, name in found))

    bands: dict[str, Band] = {}
    for variant in variants:
        if variant == REFERENCE_BACKEND:
            continue
        parsed = Variant.parse(variant)
        int8 = parsed.precision == "int8"
        band = lookup("ratios", variant, int8)
        if band is None and int8 and parsed.backend == REFERENCE_BACKEND:
            if int8_dot_product:
                band = Band(INT8_BOUND / (1 + MAX_MARGIN), MAX_MARGIN, f"faster than {REFERENCE_BACKEND} fp32")
            else:
                band = Band(INT8_BOUND_WITHOUT_DOT_PRODUCT, 0.0, "default bound (uint8 weights: no VNNI or AMX)")
        if band is None and parsed.precision != "fp32":
            fp32 = lookup("ratios", parsed.backend, False) if parsed.backend != REFERENCE_BACKEND else None
            if fp32 is not None:
                band = Band(fp32.expected, fp32.margin, f"{parsed.backend}'s fp32 band ({fp32.origin})", fp32.runs)
        if band is None and parsed.backend in DEFAULT_BOUNDS:
            bound = DEFAULT_BOUNDS[parsed.backend]
            band = Band(bound, 0.0, "default bound")
        if band is not None:
            bands[variant] = band
    floor = lookup("peak_share", REFERENCE_BACKEND, False)
    note = ""
    if floor is None:
        if model_gflop is None:
            note = "no FLOP count for this model"
        elif model_gflop < MIN_FLOOR_GFLOP:
            note = (f"{model_gflop * 1e3:.0f} MFLOP a forward pass: too small for a FLOP floor (its time is call "
                    "overhead)")
        else:
            floor = Band(GENERIC_PEAK_SHARE_FLOOR, 0.0, "generic floor for a model no machine stored")
    return Expectations(bands, floor, note, frozenset(v for v, b in bands.items() if b.origin == "own"))


# --- storing ---------------------------------------------------------------------------------------------------


def update(path: Path, key: str, rows: list[BenchRow], context: dict[str, Any]) -> list[str]:
    """Add this run's ratios (and ONNX Runtime's peak share) to `key`'s stored runs, for what this run measured
    only: other models, precisions, variants and machines are kept. Returns old vs new bands, a line each."""
    from .results import ratio_table

    data = load_expected(path)
    entry = data["machines"].setdefault(key, {})
    today = time.strftime("%Y-%m-%d")
    # The days runs were stored on: an entry from before they were kept counts its last update as one of them.
    days = entry.get(ONE_DAY) or ([entry["updated"]] if entry.get("updated") and entry.get("models") else [])
    one_day_before = stored_on_one_day(entry)
    entry.update({"updated": today, ONE_DAY: sorted({*days, today}), **context})
    one_day_after = stored_on_one_day(entry)
    models = entry.setdefault("models", {})
    changes: list[str] = []

    def add(model: str, kind: str, variant: str, value: float) -> None:
        stored = models.setdefault(model, {}).setdefault(kind, {}).setdefault(variant, {"runs": []})
        old = band_from_runs(stored["runs"], typical_spread=machine_spread(entry, model),
                             one_day=one_day_before) if stored["runs"] else None
        stored["runs"] = [*stored["runs"], round(value, 4)][-MAX_RUNS:]
        new = band_from_runs(stored["runs"], typical_spread=machine_spread(entry, model), one_day=one_day_after)
        what = "share of the peak" if kind == "peak_share" else f"x {REFERENCE_BACKEND}"
        changes.append(f"{model}-{variant} ({what}): {old.describe() if old else 'none'} -> {new.describe()}")

    table = ratio_table(rows, REFERENCE_BACKEND)
    for (model, variant), ratio in sorted(table.items()):
        if variant != REFERENCE_BACKEND:
            add(model, "ratios", variant, ratio.value)
    for row in rows:
        if row.variant == REFERENCE_BACKEND and "peak_share" in row.context:
            add(row.model, "peak_share", REFERENCE_BACKEND, row.context["peak_share"])
    if not changes:
        raise UsageError(f"--gate-update: no ratio to store (needs {REFERENCE_BACKEND} and another backend timed)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return changes
