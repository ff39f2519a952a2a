"""What this machine is: its CPU as LLVM names and sees it, and as /proc/cpuinfo describes it, and the keys built
from them (the gate's machine key, the tuning logs' folder names). Other modules ask here rather than decide."""

from __future__ import annotations

import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

# Vector instruction sets, widest first, with the features (LLVM's spelling) a schedule tuned on them may rely on.
# `avx` is AVX without AVX2 and FMA (Sandy Bridge, Ivy Bridge: the i5-3210M class).
VECTOR_ISAS: tuple[tuple[str, frozenset[str]], ...] = (
    ("avx512", frozenset({"avx512f"})),
    ("avx2", frozenset({"avx2", "fma"})),
    ("avx", frozenset({"avx"})),
    ("sse4", frozenset({"sse4.2"})),
    ("sve", frozenset({"sve"})),
    ("neon", frozenset({"neon"})),
)
# x86-64 micro-architecture levels (the psABI's, which LLVM accepts as `mcpu`), lowest first. Each entry names the
# features it adds to the level below; a feature is a tuple of spellings (LLVM's first, then /proc/cpuinfo's).
X86_64_LEVELS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("x86-64-v2", (("cx16",), ("sahf", "lahf_lm"), ("popcnt",), ("sse3", "pni"), ("ssse3",), ("sse4.1", "sse4_1"),
                   ("sse4.2", "sse4_2"))),
    ("x86-64-v3", (("avx",), ("avx2",), ("bmi", "bmi1"), ("bmi2",), ("f16c",), ("fma",), ("lzcnt", "abm"),
                   ("movbe",), ("xsave",))),
    ("x86-64-v4", (("avx512f",), ("avx512bw",), ("avx512cd",), ("avx512dq",), ("avx512vl",))),
)
# LLVM "features" that only steer instruction choice (`slow-3ops-lea`), not instructions a CPU must have.
LLVM_TUNING_FLAGS = ("slow-", "fast-", "false-deps-", "tuning-", "prefer-", "idiv", "lea-", "sbb-dep-", "branchfusion",
                     "macrofusion", "pad-short-functions", "allow-light-256-bit", "avoid-", "use-")
X86_64_ARCHES = frozenset({"x86_64", "amd64", "x86-64"})
# /proc/cpuinfo flags spelled otherwise by LLVM (only those this suite looks at).
CPUINFO_TO_LLVM = {"sse4_1": "sse4.1", "sse4_2": "sse4.2", "pni": "sse3", "bmi1": "bmi", "abm": "lzcnt",
                   "lahf_lm": "sahf", "asimd": "neon", "asimddp": "dotprod", "avx512_vnni": "avx512vnni",
                   "avx512_bf16": "avx512bf16", "avx_vnni": "avxvnni", "amx_int8": "amx-int8", "amx_tile": "amx-tile",
                   "amx_bf16": "amx-bf16"}
# /proc/cpuinfo flags that matter for reduced precision and int8: bfloat16, AMX tiles, VNNI dot products.
BF16_AMX_VNNI = re.compile(r"bf16|amx|vnni")
# Tuning-log folder name: `<cpu>-<N>c[-b<B>]`; the CPU name may itself hold hyphens (`x86-64-v3-2c`).
LOG_KEY_PATTERN = re.compile(r"^(?P<cpu>.+)-(?P<cores>\d+)c(?:-b(?P<batch>\d+))?$")


def isa_level(features: Iterable[str], arch: str = "x86_64") -> str | None:
    """The highest x86-64 level (`x86-64`, `x86-64-v2`, `-v3`, `-v4`) whose features are all in `features` (LLVM's or
    /proc/cpuinfo's spelling), or None for another architecture."""
    if arch.lower() not in X86_64_ARCHES:
        return None
    have = frozenset(features)
    level = "x86-64"
    for name, needs in X86_64_LEVELS:
        if not all(any(spelling in have for spelling in feature) for feature in needs):
            break
        level = name
    return level


def vector_isa(features: Iterable[str]) -> str:
    """The widest vector instruction set in `features` (LLVM's spelling), or `scalar`."""
    have = frozenset(features)
    for isa, needs in VECTOR_ISAS:
        if needs <= have:
            return isa
    return "scalar"


@dataclass(frozen=True)
class CpuProfile:
    """A CPU as LLVM sees it: name, architecture and features (`+`-enabled ones only)."""

    name: str
    arch: str
    features: frozenset[str]

    @property
    def vector_isa(self) -> str:
        return vector_isa(self.features)

    @property
    def isa_level(self) -> str | None:
        """Its x86-64 level (`x86-64-v3` for AVX2 + FMA + BMI...), None off x86."""
        return isa_level(self.features, self.arch)


@lru_cache(maxsize=1)
def llvm_cpu() -> str:
    """This CPU's name in LLVM (`znver4`, `emeraldrapids`), what a TVM target's `mcpu` takes; platform.machine()
    (`x86_64`) when TVM cannot be imported. Never raises."""
    try:
        from tvm.target import codegen

        return str(codegen.llvm_get_system_cpu())
    except Exception:  # TVM missing or broken: the architecture is the best name left
        return platform.machine() or "unknown"


@lru_cache(maxsize=64)
def cpu_profile(name: str | None = None) -> CpuProfile | None:
    """LLVM's view of CPU `name` (default: this machine), or None if LLVM does not know it for this architecture.
    Needs TVM (raises ImportError without it)."""
    import tvm
    from tvm.target import codegen

    host = llvm_cpu()
    name = name or host
    arch = str(codegen.llvm_get_system_triple()).split("-", 1)[0]
    probe = tvm.target.Target({"kind": "llvm", "mcpu": host})
    if name != host and name not in {str(c) for c in codegen.llvm_get_cpu_archlist(probe)}:
        return None
    target = tvm.target.Target({"kind": "llvm", "mcpu": name})
    features = frozenset(str(k) for k in codegen.llvm_get_cpu_features(target))
    return CpuProfile(name, arch, features)


def host_profile() -> CpuProfile:
    """This CPU: LLVM's profile, or when TVM is not importable one built from /proc/cpuinfo. Never raises."""
    try:
        profile = cpu_profile()
    except Exception:
        profile = None
    if profile is not None:
        return profile
    flags = cpu_flags()
    return CpuProfile(llvm_cpu(), platform.machine(), frozenset(flags | {CPUINFO_TO_LLVM.get(f, f) for f in flags}))


def tuning_profile(cpu: str | None) -> CpuProfile:
    """The CPU a tuning run writes code for: this one, or `cpu` (`--tune-target`: an LLVM CPU name or an ISA level
    such as `x86-64-v3`), which this machine must be able to run, since the candidates are timed here. Raises
    ValueError naming the option when it cannot."""
    host = cpu_profile()
    assert host is not None
    if cpu is None or cpu == host.name:
        return host
    profile = cpu_profile(cpu)
    if profile is None:
        levels = ", ".join(name for name, _ in X86_64_LEVELS) if host.isa_level else "its ISA level"
        raise ValueError(f"--tune-target {cpu}: LLVM knows no {host.arch} CPU of that name (try {levels}, "
                         f"or a CPU name such as {host.name})")
    lacking = sorted(f for f in profile.features - host.features if not f.startswith(LLVM_TUNING_FLAGS))
    if lacking:
        raise ValueError(f"--tune-target {cpu}: this machine ({host.name}) cannot run its code, which may use "
                         f"{', '.join(lacking[:6])}{' ...' if len(lacking) > 6 else ''}; "
                         "tune it on a CPU that has them")
    return profile


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except (OSError, UnicodeDecodeError):
        return ""


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's flags as /proc/cpuinfo spells them (`avx512_bf16`, `amx_tile`); empty where there is none."""
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_model_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo (`AMD EPYC 9R14 96-Core Processor`), else what platform says."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def bf16_class(flags: Iterable[str] | None = None) -> str:
    """How this CPU computes bfloat16: `amx` (AMX tiles: large speed-ups), `avx512_bf16` (dot products in vector
    registers: modest ones), `bf16` (Arm), or `none`. Stored bf16 expectations only transfer within a class."""
    have = frozenset(cpu_flags() if flags is None else flags)
    for name in ("amx_bf16", "avx512_bf16", "bf16"):
        if name in have:
            return name.removesuffix("_bf16") if name == "amx_bf16" else name
    return "none"


def gate_key(threads: int, batch_size: int) -> str:
    """The regression gate's key for this machine and run: `znver4-2t-b1`."""
    return f"{llvm_cpu()}-{threads}t-b{batch_size}"


def log_key(cpu: str, cores: int, batch_size: int = 1) -> str:
    """Folder name under tuning_logs/<model>/: CPU name and core count, `znver4-2c`; `-b4` for batch 4 (another
    batch size is another set of workloads)."""
    key = f"{cpu}-{int(cores)}c"
    return key if batch_size == 1 else f"{key}-b{batch_size}"


def parse_log_key(key: str) -> tuple[str, int, int] | None:
    """(cpu, cores, batch size) of a tuning-log folder name, the inverse of `log_key`; None if it is not one."""
    match = LOG_KEY_PATTERN.match(key)
    if not match:
        return None
    return match["cpu"], int(match["cores"]), int(match["batch"] or 1)


def summary() -> dict[str, str]:
    """This machine for reports and benchmark JSON: marketing name, Python, LLVM's CPU name, vector ISA, x86-64
    level and the bf16/AMX/VNNI flags /proc/cpuinfo shows (space-separated, empty when none)."""
    profile = host_profile()
    return {
        "cpu_name": cpu_model_name(),
        "python": platform.python_version(),
        "llvm_cpu": llvm_cpu(),
        "vector_isa": profile.vector_isa,
        "isa_level": profile.isa_level or "n/a",
        "cpu_flags_bf16_amx_vnni": " ".join(sorted(f for f in cpu_flags() if BF16_AMX_VNNI.search(f))),
    }


def describe_profile(profile: CpuProfile) -> dict[str, Any]:
    """What metadata.json records about the CPU a log was tuned on, so other machines can judge it."""
    return {"arch": profile.arch, "vector_isa": profile.vector_isa,
            "cpu_features": sorted(vector_features(profile.features))}


def vector_features(features: frozenset[str]) -> frozenset[str]:
    """The features that matter to a tuned schedule: vector and matrix instruction sets."""
    return frozenset(f for f in features if f.startswith(("avx", "amx", "fma", "sse", "neon", "sve", "dotprod",
                                                          "i8mm", "f16c")))
