"""What this machine is, decided in one place: LLVM's CPU name and features, /proc/cpuinfo, the keys built on them."""

from __future__ import annotations

import contextlib
import platform
import sys
from pathlib import Path

import pytest

from cpubench import log_finder, machine, precision
from cpubench.machine import CpuProfile, isa_level, log_key, parse_log_key

V2 = ["cx16", "sahf", "popcnt", "sse3", "ssse3", "sse4.1", "sse4.2"]
V3 = V2 + ["avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave"]
V4 = V3 + ["avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]
# /proc/cpuinfo of an AMD EPYC Zen 3 (AVX2 + FMA, no AVX-512), trimmed to the ISA flags.
ZEN3_CPUINFO_FLAGS = ("fpu cx8 cmov mmx fxsr sse sse2 pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes "
                      "xsave avx f16c lahf_lm abm sse4a bmi1 avx2 bmi2 sha_ni")
SPR_CPUINFO = ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n"
               "flags\t\t: sse sse2 pni ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt xsave avx f16c lahf_lm abm bmi1 "
               "avx2 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl avx_vnni avx512_bf16 avx512_vnni amx_bf16 "
               "amx_tile amx_int8\n")


@pytest.fixture
def fresh_caches():
    """Clear machine's caches around a test that fakes what it reads, so no other test sees the fake."""
    caches = (machine._cpuinfo, machine.cpu_flags, machine.llvm_cpu)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


@pytest.mark.parametrize("features, level", [
    (V4 + ["avx512vnni"], "x86-64-v4"),
    (V3 + ["sse4a", "sha"], "x86-64-v3"),  # Zen 3
    (V2 + ["avx", "f16c", "xsave"], "x86-64-v2"),  # Ivy Bridge: AVX without AVX2
    (V2, "x86-64-v2"),
    (["sse", "sse2", "cmov"], "x86-64"),
    ([], "x86-64"),
    ([f for f in V4 if f != "movbe"], "x86-64-v2"),  # a level needs every level below it
    (ZEN3_CPUINFO_FLAGS.split(), "x86-64-v3"),  # /proc/cpuinfo's spelling works too
])
def test_isa_level_from_features(features, level):
    assert isa_level(features) == level
    assert CpuProfile("x", "x86_64", frozenset(features)).isa_level == level


def test_isa_level_is_none_off_x86():
    assert isa_level(["neon", "sve", "avx2"], "aarch64") is None
    assert CpuProfile("neoverse-v1", "aarch64", frozenset(["neon", "sve"])).isa_level is None


@pytest.mark.parametrize("features, isa", [
    (V4, "avx512"), (V3, "avx2"), (V2 + ["avx"], "avx"), (V2 + ["avx", "avx2"], "avx"), (V2, "sse4"),
    (["sse2"], "scalar"), (["neon", "sve"], "sve"), (["neon"], "neon"),
])
def test_vector_isa(features, isa):
    assert CpuProfile("x", "x86_64", frozenset(features)).vector_isa == isa


def test_llvm_agrees_with_the_isa_levels():
    """LLVM's own feature tables: each level's name gives that level; known CPUs land where they should."""
    pytest.importorskip("tvm")
    if machine.cpu_profile().arch != "x86_64":
        pytest.skip("x86-64 levels only exist on x86-64")
    for name in ("x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"):
        assert machine.cpu_profile(name).isa_level == name
    expected = {"sandybridge": ("x86-64-v2", "avx"), "ivybridge": ("x86-64-v2", "avx"),
                "znver3": ("x86-64-v3", "avx2"), "haswell": ("x86-64-v3", "avx2"),
                "znver4": ("x86-64-v4", "avx512"), "sapphirerapids": ("x86-64-v4", "avx512")}
    for name, (level, isa) in expected.items():
        profile = machine.cpu_profile(name)
        assert (profile.isa_level, profile.vector_isa) == (level, isa), name
    assert machine.cpu_profile().isa_level is not None


def test_tune_target_must_be_code_this_machine_runs():
    """`--tune-target`: an ISA level at or below this CPU's is taken (instruction-choice flags such as
    `slow-3ops-lea` are not instructions); one above it, another vendor's extensions or an unknown name is refused
    naming the option."""
    pytest.importorskip("tvm")
    host = machine.cpu_profile()
    if host.arch != "x86_64":
        pytest.skip("x86-64 levels only exist on x86-64")
    assert machine.tuning_profile(None) == host and machine.tuning_profile(host.name) == host
    level = host.isa_level
    assert machine.tuning_profile(level).name == level
    assert machine.tuning_profile("x86-64-v2").vector_isa == "sse4"
    with pytest.raises(ValueError, match="--tune-target no-such-cpu: LLVM knows no"):
        machine.tuning_profile("no-such-cpu")
    if level != "x86-64-v4":
        with pytest.raises(ValueError, match="--tune-target x86-64-v4: this machine .* cannot run its code"):
            machine.tuning_profile("x86-64-v4")
    foreign = "znver3" if "sse4a" not in host.features else "sapphirerapids"
    with pytest.raises(ValueError, match=f"--tune-target {foreign}: this machine"):
        machine.tuning_profile(foreign)


def test_llvm_cpu_falls_back_to_the_architecture_without_tvm(monkeypatch, fresh_caches):
    monkeypatch.setitem(sys.modules, "tvm", None)  # `import tvm` now raises ImportError
    monkeypatch.setitem(sys.modules, "tvm.target", None)
    assert machine.llvm_cpu() == platform.machine()
    assert machine.gate_key(2, 1) == f"{platform.machine()}-2t-b1"


def test_gate_key_is_what_the_gates_machine_key_was():
    """gate.machine_key was `f"{host_cpu()}-{threads}t-b{batch}"`, with platform.machine() when TVM is missing."""
    try:
        import tvm

        cpu = str(tvm.target.codegen.llvm_get_system_cpu())
    except ImportError:
        cpu = platform.machine()
    assert machine.gate_key(2, 1) == f"{cpu}-2t-b1"
    assert machine.gate_key(16, 4) == f"{cpu}-16t-b4"


def test_log_key_and_its_parser_agree():
    assert log_key("znver4", 2) == "znver4-2c"
    assert log_key("znver4", 2, 4) == "znver4-2c-b4"
    assert log_key("x86-64-v3", 16) == "x86-64-v3-16c"
    for cpu, cores, batch in [("znver4", 2, 1), ("x86-64-v3", 2, 1), ("x86-64", 1, 8), ("neoverse-v1", 64, 2)]:
        assert parse_log_key(log_key(cpu, cores, batch)) == (cpu, cores, batch)
    assert log_finder.parse_key is parse_log_key


def test_target_key_uses_log_key():
    pytest.importorskip("tvm")
    from cpubench import tvm_support as tv

    assert tv.host_cpu() == machine.llvm_cpu()
    assert tv.target_key(tv.host_target(2)) == log_key(machine.llvm_cpu(), 2)
    assert tv.target_key(tv.host_target(1), 4) == log_key(machine.llvm_cpu(), 1, 4)


def test_cpuinfo_flags_and_model_name(monkeypatch, fresh_caches):
    monkeypatch.setattr(machine, "_cpuinfo", lambda: SPR_CPUINFO)
    assert {"avx512_bf16", "amx_tile", "sse4_2"} <= machine.cpu_flags()
    assert machine.cpu_model_name() == "Intel(R) Xeon(R) Platinum 8488C"
    monkeypatch.setattr(machine, "_cpuinfo", lambda: "")
    machine.cpu_flags.cache_clear()
    assert machine.cpu_flags() == frozenset()
    assert machine.cpu_model_name() == (platform.processor() or platform.machine())


def test_summary_without_tvm_reads_proc_cpuinfo(monkeypatch, fresh_caches):
    def no_tvm(name=None):
        raise ImportError("no tvm here")

    monkeypatch.setattr(machine, "_cpuinfo", lambda: SPR_CPUINFO)
    monkeypatch.setattr(machine, "cpu_profile", no_tvm)
    monkeypatch.setattr(machine, "llvm_cpu", lambda: "x86_64")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    info = machine.summary()
    assert info["cpu_name"] == "Intel(R) Xeon(R) Platinum 8488C"
    assert info["python"] == platform.python_version()
    assert info["llvm_cpu"] == "x86_64"
    assert (info["vector_isa"], info["isa_level"]) == ("avx512", "x86-64-v4")
    assert info["cpu_flags_bf16_amx_vnni"] == "amx_bf16 amx_int8 amx_tile avx512_bf16 avx512_vnni avx_vnni"


def test_summary_on_this_machine_extends_what_the_session_reported():
    """session.machine_summary gave the model name from /proc/cpuinfo (else platform's names) and Python's version."""
    info = machine.summary()
    assert {"cpu_name", "python", "llvm_cpu", "vector_isa", "isa_level", "cpu_flags_bf16_amx_vnni"} <= set(info)
    assert all(isinstance(value, str) for value in info.values())
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    assert (info["cpu_name"], info["python"]) == (cpu, platform.python_version())


def test_one_owner():
    """Other modules re-export machine's objects rather than keep their own copies."""
    assert precision.cpu_flags is machine.cpu_flags
    assert log_finder.CpuProfile is machine.CpuProfile
    assert log_finder.cpu_profile is machine.cpu_profile
    assert log_finder.VECTOR_ISAS is machine.VECTOR_ISAS
    assert log_finder.describe_profile is machine.describe_profile
