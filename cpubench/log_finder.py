"""Which stored tuning log applies to this CPU: the exact one, a named one, or the nearest compatible one.

MetaSchedule finds a record by the workload's structure, never by the target, and replays its schedule with
this CPU's LLVM target: a float32 log tuned on one x86 CPU compiles to legal code on another. What a log can
*require* is a tensor intrinsic (VNNI, AMX, ...) baked into its schedules. So a log is compatible when it was
tuned on the same architecture, on a vector instruction set this CPU has, and its intrinsics' features are all
here. Among compatible logs the nearest wins: same CPU, then same vector ISA, then the core count closest to
this run's, then the most CPU features in common. The backend, the tuner (warm start) and the report all ask
this module and print what it says.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import UsageError
from .tvm_support import DB_FILES, METADATA_FILE

KEY_PATTERN = re.compile(r"^(?P<cpu>.+)-(?P<cores>\d+)c(?:-b(?P<batch>\d+))?$")

# Vector instruction sets, widest first, with the features a schedule tuned on them may rely on.
VECTOR_ISAS: tuple[tuple[str, frozenset[str]], ...] = (
    ("avx512", frozenset({"avx512f"})),
    ("avx2", frozenset({"avx2", "fma"})),
    ("sse4", frozenset({"sse4.2"})),
    ("sve", frozenset({"sve"})),
    ("neon", frozenset({"neon"})),
)
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
class CpuProfile:
    """A CPU as LLVM sees it: name, architecture and features (`+`-enabled ones only)."""

    name: str
    arch: str
    features: frozenset[str]

    @property
    def vector_isa(self) -> str:
        for isa, needs in VECTOR_ISAS:
            if needs <= self.features:
                return isa
        return "scalar"


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

    @property
    def label(self) -> str:
        return f"log from {self.log.key}"


class NoLog(Exception):
    """No stored log applies; the message says why and what makes one."""


@lru_cache(maxsize=64)
def cpu_profile(name: str | None = None) -> CpuProfile | None:
    """LLVM's view of CPU `name` (default: this machine), or None if LLVM does not know it for this architecture."""
    import tvm
    from tvm.target import codegen

    host = str(codegen.llvm_get_system_cpu())
    name = name or host
    arch = str(codegen.llvm_get_system_triple()).split("-", 1)[0]
    probe = tvm.target.Target({"kind": "llvm", "mcpu": host})
    if name != host and name not in {str(c) for c in codegen.llvm_get_cpu_archlist(probe)}:
        return None
    target = tvm.target.Target({"kind": "llvm", "mcpu": name})
    features = frozenset(str(k) for k in codegen.llvm_get_cpu_features(target))
    return CpuProfile(name, arch, features)


def parse_key(key: str) -> tuple[str, int, int] | None:
    match = KEY_PATTERN.match(key)
    if not match:
        return None
    return match["cpu"], int(match["cores"]), int(match["batch"] or 1)


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
    isa_needs = dict(VECTOR_ISAS).get(profile.vector_isa, frozenset())
    lacking = sorted((isa_needs | intrinsics_needed(log.path)) - host.features)
    if lacking:
        return f"its code needs {', '.join(lacking)}, which {host.name} lacks"
    return None


def _rank(log: StoredLog, host: CpuProfile, cores: int) -> tuple:
    profile = log_profile(log)
    assert profile is not None
    isa_order = [isa for isa, _ in VECTOR_ISAS]
    isa_distance = abs(isa_order.index(profile.vector_isa) - isa_order.index(host.vector_isa)) \
        if profile.vector_isa in isa_order and host.vector_isa in isa_order else len(isa_order)
    mine, theirs = vector_features(host.features), vector_features(profile.features)
    shared = len(mine & theirs) / max(1, len(mine | theirs))
    return (log.cpu != host.name, isa_distance, abs(log.cores - cores), -shared, log.key)


def _why(log: StoredLog, host: CpuProfile, cores: int) -> str:
    profile = log_profile(log)
    parts = ["same CPU" if log.cpu == host.name else f"{profile.vector_isa if profile else '?'} like {host.name}"]
    parts.append("same core count" if log.cores == cores else f"{log.cores} cores, not {cores}")
    return ", ".join(parts)


def choose_log(tuning_logs: Path, model: str, cores: int, batch_size: int = 1, *, exact_only: bool = False,
               named: str | None = None, host: CpuProfile | None = None) -> LogChoice:
    """The log `tvm-tuned` applies and the tuner starts from. Raises NoLog with the reason when none applies."""
    host = host or cpu_profile()
    assert host is not None
    exact_key = f"{host.name}-{cores}c" + ("" if batch_size == 1 else f"-b{batch_size}")
    logs = stored_logs(tuning_logs, model)
    if named is not None:
        log = named_log(tuning_logs, model, named)
        reason = incompatibility(log, host, batch_size)
        if reason:
            raise UsageError(f"--tuning-log {named}: cannot run on {host.name}: {reason}")
        transferred = log.key != exact_key
        return LogChoice(log, transferred, "named by --tuning-log" + (f" ({_why(log, host, cores)})"
                                                                         if transferred else ""))
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
    return LogChoice(best, True, f"nearest compatible log: {_why(best, host, cores)}")


def seed_logs(tuning_logs: Path, model: str, cores: int, batch_size: int = 1, *, named: str | None = None,
              host: CpuProfile | None = None) -> list[LogChoice]:
    """Every intact log that may seed a warm start on this CPU, nearest first (just the named one if given)."""
    host = host or cpu_profile()
    assert host is not None
    if named is not None:
        return [choose_log(tuning_logs, model, cores, batch_size, named=named, host=host)]
    intact = [log for log in stored_logs(tuning_logs, model)
              if all((log.path / name).is_file() for name in DB_FILES) and not incompatibility(log, host, batch_size)]
    exact_key = f"{host.name}-{cores}c" + ("" if batch_size == 1 else f"-b{batch_size}")
    return [LogChoice(log, log.key != exact_key, _why(log, host, cores) if log.key != exact_key
                      else "tuned on this CPU and core count")
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


def describe_profile(profile: CpuProfile) -> dict[str, Any]:
    """What metadata.json records about the CPU a log was tuned on, so other machines can judge it."""
    return {"arch": profile.arch, "vector_isa": profile.vector_isa,
            "cpu_features": sorted(vector_features(profile.features))}


def vector_features(features: frozenset[str]) -> frozenset[str]:
    """The features that matter to a tuned schedule: vector and matrix instruction sets."""
    return frozenset(f for f in features if f.startswith(("avx", "amx", "fma", "sse", "neon", "sve", "dotprod",
                                                          "i8mm", "f16c")))
