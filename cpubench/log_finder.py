"""Which stored tuning log applies to this CPU: the exact one, a named one, or the nearest compatible one.

MetaSchedule finds a record by the workload's structure, never by the target, and replays its schedule with
this CPU's LLVM target: a float32 log tuned on one x86 CPU compiles to legal code on another, even from a wider
vector ISA (LLVM splits AVX-512's 512-bit vectors into the 256-bit ones an AVX2 CPU has; measured on Zen 3 with
Zen 4 and Xeon logs: full coverage, same answer). What a log can *require* is a tensor intrinsic (VNNI, AMX, ...)
baked into its schedules, or scalable vectors (SVE). So a log is refused only when it was tuned on another
architecture or batch size, or needs such features this CPU lacks. Among compatible logs the nearest wins: same
CPU, then one tuned for this CPU's x86-64 level (`x86-64-v3-2c`), then the same vector ISA, then wider ISAs
(nearest first), then narrower; then the core count closest to this run's, then the most CPU features in common.
The backend, the tuner (warm start) and the report all ask this module and print what it says. What this CPU is
comes from `machine`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .machine import (
    LOG_KEY_PATTERN,
    VECTOR_ISAS,
    CpuProfile,
    cpu_profile,
    describe_profile,
    isa_level,
    log_key,
    parse_log_key,
    vector_features,
)
from .tvm_support import DB_FILES, METADATA_FILE

__all__ = ["KEY_PATTERN", "VECTOR_ISAS", "CpuProfile", "LogChoice", "NoLog", "StoredLog", "choose_log",
           "cpu_profile", "describe_profile", "incompatibility", "intrinsics_needed", "isa_level", "log_profile",
           "named_log", "parse_key", "seed_logs", "stored_logs", "vector_features"]

KEY_PATTERN = LOG_KEY_PATTERN
parse_key = parse_log_key
# Vector ISAs LLVM cannot lower onto a CPU without them: scalable vectors (a schedule may split loops by vscale).
# Fixed-width ones (avx512, avx2, avx, sse4, neon) are legalised to whatever width this CPU has.
SCALABLE_ISAS = frozenset({"sve"})
# Tensor intrinsics that a tuned schedule may embed (TVM's `tensorize`), and the CPU features they execute.
INTRINSIC_FEATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("amx", frozenset({"amx-int8", "amx-tile"})),
    ("vnni", frozenset({"avx512vnni"})),
    ("avx512", frozenset({"avx512f"})),
    ("avx2", frozenset({"avx2"})),
    ("sdot", frozenset({"dotprod"})),
    ("udot", frozenset({"dotprod"})),
    ("smmla", frozenset({"i8mm"})),
    ("neon", frozenset({"neon"})),
)


@dataclass(frozen=True)
class StoredLog:
    """One folder under tuning_logs/<model>/, e.g. `znver4-2c`."""

    path: Path
    key: str
    cpu: str
    cores: int
    batch_size: int
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def where(self) -> str:
        """Where it was tuned, in words: `znver4, 2 cores`."""
        return f"{self.cpu}, {self.cores} core{'s' if self.cores != 1 else ''}"


@dataclass(frozen=True)
class LogChoice:
    log: StoredLog
    transferred: bool  # tuned on another CPU or core count than this run's
    why: str
    isa_change: str = ""  # `avx512 on avx2` when the log was tuned for another vector ISA than this CPU's

    @property
    def label(self) -> str:
        return f"log from {self.log.key}" + (f", {self.isa_change}" if self.isa_change else "")


class NoLog(Exception):
    """No stored log applies; the message says why and what makes one."""


def read_metadata(log_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((log_dir / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def stored_logs(tuning_logs: Path, model: str) -> list[StoredLog]:
    """Every folder of `model` that is, or was, a log (a database file or metadata in it), sorted by key. A damaged
    one stays a candidate: if it is the nearest, the build fails naming the missing file, rather than another log
    quietly taking its place."""
    logs = []
    base = tuning_logs / model
    if not base.is_dir():
        return logs
    for path in sorted(base.iterdir()):
        parsed = parse_key(path.name)
        if parsed is None or path.name.startswith(".") or not path.is_dir():
            continue
        if not any((path / name).exists() for name in (*DB_FILES, METADATA_FILE)):
            continue
        cpu, cores, batch = parsed
        logs.append(StoredLog(path, path.name, cpu, cores, batch, read_metadata(path)))
    return logs


def intrinsics_needed(log_dir: Path) -> frozenset[str]:
    """CPU features the log's schedules need to run: those of the tensor intrinsics its traces use."""
    try:
        text = (log_dir / DB_FILES[1]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return frozenset()
    needs: set[str] = set()
    for intrinsic in re.findall(r'"Tensorize",\s*\[[^\]]*\],\s*\[\s*"([^"]+)"', text):
        for pattern, features in INTRINSIC_FEATURES:
            if pattern in intrinsic.lower():
                needs |= features
                break
        else:  # an intrinsic we cannot vouch for: only its own CPU may run it
            needs.add(f"exactly the CPU it was tuned on ({intrinsic})")
    return frozenset(needs)


def log_profile(log: StoredLog) -> CpuProfile | None:
    """The CPU a log was tuned on: from its metadata when stored there, else from LLVM by name."""
    meta = log.metadata
    if meta.get("arch") and isinstance(meta.get("cpu_features"), list):
        return CpuProfile(log.cpu, str(meta["arch"]), frozenset(map(str, meta["cpu_features"])))
    return cpu_profile(log.cpu)


def incompatibility(log: StoredLog, host: CpuProfile, batch_size: int) -> str | None:
    """Why `log` cannot serve this CPU, or None when it can."""
    if log.batch_size != batch_size:
        return f"tuned for batch {log.batch_size}, not {batch_size}"
    profile = log_profile(log)
    if profile is None or profile.arch != host.arch:
        return f"tuned on another architecture ({log.cpu} is not a {host.arch} CPU LLVM knows)"
    # A wider fixed-width vector ISA is fine (LLVM splits its vectors); scalable vectors and intrinsics are not.
    isa_needs = dict(VECTOR_ISAS).get(profile.vector_isa, frozenset()) \
        if profile.vector_isa in SCALABLE_ISAS else frozenset()
    lacking = sorted((isa_needs | intrinsics_needed(log.path)) - host.features)
    if lacking:
        return f"its code needs {', '.join(lacking)}, which {host.name} lacks"
    return None


def _isa_order(log_isa: str, host_isa: str) -> tuple[int, int]:
    """Same vector ISA first (0), then wider ones, nearest width first (1, n), then narrower ones (2, n)."""
    order = [isa for isa, _ in VECTOR_ISAS] + ["scalar"]
    if log_isa == host_isa:
        return (0, 0)
    if log_isa not in order or host_isa not in order:
        return (3, 0)
    mine, theirs = order.index(host_isa), order.index(log_isa)
    return (1, mine - theirs) if theirs < mine else (2, theirs - mine)


def _rank(log: StoredLog, host: CpuProfile, cores: int) -> tuple:
    """Sort key among compatible logs: same CPU, then tuned for this CPU's x86-64 level, then by vector ISA (same,
    wider, narrower), then core-count distance, shared features and key."""
    profile = log_profile(log)
    assert profile is not None
    mine, theirs = vector_features(host.features), vector_features(profile.features)
    shared = len(mine & theirs) / max(1, len(mine | theirs))
    level = host.isa_level
    return (log.cpu != host.name, level is None or log.cpu != level, *_isa_order(profile.vector_isa, host.vector_isa),
            abs(log.cores - cores), -shared, log.key)


def _isa_change(log: StoredLog, host: CpuProfile) -> str:
    """`avx512 on avx2` when `log` was tuned for another vector ISA than this CPU's, else empty."""
    if log.cpu == host.name:
        return ""
    profile = log_profile(log)
    if profile is None or profile.vector_isa == host.vector_isa:
        return ""
    return f"{profile.vector_isa} on {host.vector_isa}"


def _why(log: StoredLog, host: CpuProfile, cores: int) -> str:
    profile = log_profile(log)
    log_isa = profile.vector_isa if profile else "?"
    if log.cpu == host.name:
        parts = ["same CPU"]
    elif log.cpu == host.isa_level:
        parts = [f"tuned for {log.cpu}, this CPU's ISA level ({log_isa})"]
    elif log_isa == host.vector_isa:
        parts = [f"{log_isa} like {host.name}"]
    else:
        order = _isa_order(log_isa, host.vector_isa)[0]
        how = {1: "LLVM splits its wider vectors", 2: "narrower vectors than this CPU's"}.get(order, "other vectors")
        parts = [f"{log_isa} code on {host.name}'s {host.vector_isa} ({how})"]
    parts.append("same core count" if log.cores == cores else f"{log.cores} cores, not {cores}")
    return ", ".join(parts)


def choose_log(tuning_logs: Path, model: str, cores: int, batch_size: int = 1, *, exact_only: bool = False,
               named: str | None = None, host: CpuProfile | None = None) -> LogChoice:
    """The log `tvm-tuned` applies and the tuner starts from. Raises NoLog with the reason when none applies."""
    host = host or cpu_profile()
    assert host is not None
    exact_key = log_key(host.name, cores, batch_size)
    logs = stored_logs(tuning_logs, model)
    if named is not None:
        log = named_log(tuning_logs, model, named)
        reason = incompatibility(log, host, batch_size)
        if reason:
            raise UsageError(f"--tuning-log {named}: cannot run on {host.name}: {reason}")
        transferred = log.key != exact_key
        return LogChoice(log, transferred, "named by --tuning-log" + (f" ({_why(log, host, cores)})"
                                                                         if transferred else ""),
                         _isa_change(log, host))
    exact = next((log for log in logs if log.key == exact_key), None)
    if exact is None and (tuning_logs / model / exact_key).is_dir():
        # The folder is there but its database is not: a broken log, never silently replaced by another.
        exact = StoredLog(tuning_logs / model / exact_key, exact_key, host.name, cores, batch_size)
    if exact is not None:
        return LogChoice(exact, False, "tuned on this CPU and core count")
    if exact_only:
        raise NoLog(f"no tuning log for {model} on this CPU ({tuning_logs / model / exact_key} does not exist) "
                    "and --tuning-log-exact refuses the others")
    compatible, refused = [], []
    for log in logs:
        reason = incompatibility(log, host, batch_size)
        (refused.append(f"{log.key}: {reason}") if reason else compatible.append(log))
    if not compatible:
        detail = f" (refused: {'; '.join(refused)})" if refused else ""
        raise NoLog(f"no tuning log for {model} fits this CPU ({host.name}, {host.vector_isa}){detail}")
    best = min(compatible, key=lambda log: _rank(log, host, cores))
    return LogChoice(best, True, f"nearest compatible log: {_why(best, host, cores)}", _isa_change(best, host))


def seed_logs(tuning_logs: Path, model: str, cores: int, batch_size: int = 1, *, named: str | None = None,
              host: CpuProfile | None = None) -> list[LogChoice]:
    """Every intact log that may seed a warm start on this CPU, nearest first (just the named one if given)."""
    host = host or cpu_profile()
    assert host is not None
    if named is not None:
        return [choose_log(tuning_logs, model, cores, batch_size, named=named, host=host)]
    intact = [log for log in stored_logs(tuning_logs, model)
              if all((log.path / name).is_file() for name in DB_FILES) and not incompatibility(log, host, batch_size)]
    exact_key = log_key(host.name, cores, batch_size)
    return [LogChoice(log, log.key != exact_key, _why(log, host, cores) if log.key != exact_key
                      else "tuned on this CPU and core count", _isa_change(log, host))
            for log in sorted(intact, key=lambda log: _rank(log, host, cores))]


def named_log(tuning_logs: Path, model: str, named: str) -> StoredLog:
    """`--tuning-log KEY` (a folder under tuning_logs/<model>/) or `--tuning-log PATH` (a log folder)."""
    stored = tuning_logs / model / named
    path = Path(named) if Path(named).is_dir() and not stored.is_dir() else stored
    if not path.is_dir():
        keys = ", ".join(log.key for log in stored_logs(tuning_logs, model)) or "none"
        raise UsageError(f"--tuning-log {named}: no such log for {model} (stored: {keys})")
    parsed = parse_key(path.name)
    meta = read_metadata(path)
    if parsed is None:
        cpu = str(meta.get("cpu") or "unknown")
        parsed = (cpu, int(meta.get("cores") or 1), int(meta.get("batch_size") or 1))
    cpu, cores, batch = parsed
    return StoredLog(path, path.name, cpu, cores, batch, meta)
