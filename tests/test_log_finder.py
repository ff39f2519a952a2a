"""Which stored tuning log applies to which CPU: exact first, then the nearest compatible, never one that cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpubench.errors import UsageError
from cpubench.log_finder import CpuProfile, NoLog, choose_log, incompatibility, parse_key, seed_logs, stored_logs

AVX512 = ["avx", "avx2", "fma", "sse4.2", "avx512f", "avx512bw", "avx512vl", "avx512dq"]
ZEN4 = CpuProfile("znver4", "x86_64", frozenset(AVX512 + ["avx512vnni", "avx512bf16"]))
ZEN5 = CpuProfile("znver5", "x86_64", frozenset(AVX512 + ["avx512vnni", "avx512bf16", "avxvnni"]))
SPR = CpuProfile("sapphirerapids", "x86_64", frozenset(AVX512 + ["avx512vnni", "amx-int8", "amx-tile"]))
HASWELL = CpuProfile("haswell", "x86_64", frozenset(["avx", "avx2", "fma", "sse4.2"]))
ARM = CpuProfile("neoverse-v1", "aarch64", frozenset(["neon", "sve", "dotprod"]))
ARM_NEON = CpuProfile("cortex-a72", "aarch64", frozenset(["neon"]))
# What LLVM reports for an AVX2-only Zen 3 and an AVX-only Ivy Bridge (the i5-3210M class), ISA features only.
X86_64_V2 = ["cx16", "sahf", "popcnt", "sse3", "ssse3", "sse4.1", "sse4.2", "crc32"]
ZEN3 = CpuProfile("znver3", "x86_64", frozenset(X86_64_V2 + ["avx", "avx2", "fma", "bmi", "bmi2", "f16c", "lzcnt",
                                                              "movbe", "xsave", "sse4a"]))
IVYBRIDGE = CpuProfile("ivybridge", "x86_64", frozenset(X86_64_V2 + ["avx", "f16c", "xsave", "pclmul"]))
V3 = CpuProfile("x86-64-v3", "x86_64", ZEN3.features - {"sse4a"})
AMX_RECORD = '[0,[[["Tensorize",["b0"],["AMX-int8-matmul-16x64x64",1],[]]],[]],[1e-3],null,null]'
RECORD = '[0,[[["GetSBlock",[],["conv","main"],["b0"]]],[]],[1e-3],null,null]'
VNNI_RECORD = '[0,[[["Tensorize",["b0"],["dot_16x4_vnni",1],[]]],[]],[1e-3],null,null]'


def make_log(root: Path, key: str, cpu: CpuProfile, record: str = RECORD, model: str = "net") -> Path:
    folder = root / model / key
    folder.mkdir(parents=True)
    (folder / "database_workload.json").write_text('["0x1",{}]\n')
    (folder / "database_tuning_record.json").write_text(record + "\n")
    (folder / "metadata.json").write_text(json.dumps({"cpu": cpu.name, "arch": cpu.arch,
                                                      "cpu_features": sorted(cpu.features)}))
    return folder


def test_exact_log_wins(tmp_path):
    make_log(tmp_path, "znver4-2c", ZEN4)
    make_log(tmp_path, "znver5-2c", ZEN5)
    choice = choose_log(tmp_path, "net", 2, host=ZEN5)
    assert choice.log.key == "znver5-2c" and not choice.transferred and choice.label == "log from znver5-2c"


def test_nearest_prefers_same_core_count_then_shared_features(tmp_path):
    make_log(tmp_path, "znver4-2c", ZEN4)
    make_log(tmp_path, "znver4-16c", ZEN4)
    make_log(tmp_path, "sapphirerapids-2c", SPR)
    make_log(tmp_path, "haswell-2c", HASWELL)
    choice = choose_log(tmp_path, "net", 2, host=ZEN5)
    assert choice.log.key == "znver4-2c" and choice.transferred
    assert "avx512" in choice.why and "same core count" in choice.why
    assert choose_log(tmp_path, "net", 16, host=ZEN5).log.key == "znver4-16c"
    # Same CPU with another core count beats another CPU with the same count.
    (tmp_path / "net" / "znver4-2c" / "database_tuning_record.json").unlink()
    assert choose_log(tmp_path, "net", 2, host=CpuProfile("znver4", "x86_64", ZEN4.features)).log.key == "znver4-2c"
    assert choose_log(tmp_path, "net", 12, host=ZEN4).log.key == "znver4-16c"


def test_never_a_log_whose_code_needs_what_this_cpu_lacks(tmp_path):
    make_log(tmp_path, "znver4-2c", ZEN4, record=VNNI_RECORD)
    with pytest.raises(NoLog, match=r"znver4-2c: its code needs avx512vnni, which haswell lacks"):
        choose_log(tmp_path, "net", 2, host=HASWELL)
    make_log(tmp_path, "haswell-2c", HASWELL)
    assert choose_log(tmp_path, "net", 2, host=SPR).log.key == "znver4-2c"  # same vector ISA first
    (tmp_path / "net" / "znver4-2c" / "metadata.json").unlink()  # old logs: LLVM knows znver4 by name
    assert choose_log(tmp_path, "net", 2, host=HASWELL).log.key == "haswell-2c"


@pytest.mark.parametrize("host, isa", [(ZEN3, "avx2"), (HASWELL, "avx2"), (IVYBRIDGE, "avx")])
def test_a_wider_vector_isa_applies_and_says_so(tmp_path, host, isa):
    """LLVM splits AVX-512's vectors to the width this CPU has (measured on Zen 3: full coverage, same answer)."""
    assert host.vector_isa == isa
    make_log(tmp_path, "znver4-2c", ZEN4)
    choice = choose_log(tmp_path, "net", 2, host=host)
    assert choice.log.key == "znver4-2c" and choice.transferred
    assert choice.label == f"log from znver4-2c, avx512 on {isa}"
    assert "avx512" in choice.why and "wider" in choice.why and "same core count" in choice.why
    assert [c.label for c in seed_logs(tmp_path, "net", 2, host=host)] == [choice.label]
    assert choose_log(tmp_path, "net", 2, named="znver4-2c", host=host).label == choice.label


def test_an_avx2_log_applies_on_avx_and_a_same_isa_log_keeps_its_label(tmp_path):
    make_log(tmp_path, "haswell-2c", HASWELL)
    assert choose_log(tmp_path, "net", 2, host=IVYBRIDGE).label == "log from haswell-2c, avx2 on avx"
    assert choose_log(tmp_path, "net", 2, host=ZEN3).label == "log from haswell-2c"


def test_tensor_intrinsics_are_refused_naming_the_feature_this_cpu_lacks(tmp_path):
    make_log(tmp_path, "znver4-2c", ZEN4, record=VNNI_RECORD)
    make_log(tmp_path, "sapphirerapids-2c", SPR, record=AMX_RECORD)
    with pytest.raises(NoLog) as refused:
        choose_log(tmp_path, "net", 2, host=ZEN3)
    assert "znver4-2c: its code needs avx512vnni, which znver3 lacks" in str(refused.value)
    assert "sapphirerapids-2c: its code needs amx-int8, amx-tile, which znver3 lacks" in str(refused.value)
    assert seed_logs(tmp_path, "net", 2, host=ZEN3) == []
    with pytest.raises(UsageError, match="cannot run on znver3: its code needs avx512vnni"):
        choose_log(tmp_path, "net", 2, named="znver4-2c", host=ZEN3)
    # Zen 4 has VNNI but no AMX: the VNNI log serves it, the AMX one is refused.
    assert choose_log(tmp_path, "net", 2, host=ZEN5).log.key == "znver4-2c"
    assert "amx-int8" in (incompatibility(stored_logs(tmp_path, "net")[0], ZEN4, 1) or "")


def test_scalable_vectors_need_their_feature(tmp_path):
    make_log(tmp_path, "neoverse-v1-2c", ARM)
    with pytest.raises(NoLog, match="its code needs sve, which cortex-a72 lacks"):
        choose_log(tmp_path, "net", 2, host=ARM_NEON)


def test_isa_level_log_ranks_after_the_exact_one_and_before_other_cpus(tmp_path):
    make_log(tmp_path, "znver4-2c", ZEN4)
    make_log(tmp_path, "haswell-2c", HASWELL)
    make_log(tmp_path, "x86-64-v3-2c", V3)
    make_log(tmp_path, "x86-64-v4-2c", CpuProfile("x86-64-v4", "x86_64", frozenset(AVX512)))
    assert ZEN3.isa_level == "x86-64-v3"
    choice = choose_log(tmp_path, "net", 2, host=ZEN3)
    assert choice.log.key == "x86-64-v3-2c" and choice.label == "log from x86-64-v3-2c"
    assert "this CPU's ISA level" in choice.why
    assert [c.log.key for c in seed_logs(tmp_path, "net", 2, host=ZEN3)] == [
        "x86-64-v3-2c", "haswell-2c", "x86-64-v4-2c", "znver4-2c"]  # level, same ISA, wider (ties by key)
    make_log(tmp_path, "znver3-2c", ZEN3)
    assert choose_log(tmp_path, "net", 2, host=ZEN3).log.key == "znver3-2c"
    assert seed_logs(tmp_path, "net", 2, host=ZEN3)[0].log.key == "znver3-2c"


def test_rank_same_isa_then_wider_nearest_first_then_narrower(tmp_path):
    make_log(tmp_path, "znver4-2c", ZEN4)
    make_log(tmp_path, "haswell-2c", HASWELL)
    make_log(tmp_path, "westmere-2c", CpuProfile("westmere", "x86_64", frozenset(X86_64_V2)))
    order = [c.log.key for c in seed_logs(tmp_path, "net", 2, host=IVYBRIDGE)]
    assert order == ["haswell-2c", "znver4-2c", "westmere-2c"]  # avx2 (nearest wider), avx512, then sse4
    assert seed_logs(tmp_path, "net", 2, host=IVYBRIDGE)[2].label == "log from westmere-2c, sse4 on avx"
    make_log(tmp_path, "sandybridge-16c", IVYBRIDGE)
    assert choose_log(tmp_path, "net", 2, host=IVYBRIDGE).log.key == "sandybridge-16c"  # same ISA beats core count


def test_parse_key_accepts_hyphenated_cpu_names():
    assert parse_key("x86-64-v3-2c") == ("x86-64-v3", 2, 1)
    assert parse_key("x86-64-v4-16c-b4") == ("x86-64-v4", 16, 4)
    assert parse_key("x86-64-1c") == ("x86-64", 1, 1)
    assert parse_key("neoverse-v1-2c") == ("neoverse-v1", 2, 1)
    assert parse_key("znver4-2c-b8") == ("znver4", 2, 8)
    assert parse_key("znver4") is None and parse_key("x86-64-v3") is None


def test_tensor_intrinsics_require_their_features(tmp_path):
    vnni = make_log(tmp_path, "znver4-2c", ZEN4, record=VNNI_RECORD)
    logs = stored_logs(tmp_path, "net")
    no_vnni = CpuProfile("skx-like", "x86_64", frozenset(AVX512))
    assert "avx512vnni" in (incompatibility(logs[0], no_vnni, 1) or "")
    assert incompatibility(logs[0], SPR, 1) is None
    (vnni / "database_tuning_record.json").write_text(VNNI_RECORD.replace("dot_16x4_vnni", "mystery_mma") + "\n")
    assert "exactly the CPU it was tuned on" in (incompatibility(stored_logs(tmp_path, "net")[0], SPR, 1) or "")


def test_other_architecture_and_batch_size_are_refused(tmp_path):
    make_log(tmp_path, "znver4-2c", ZEN4)
    make_log(tmp_path, "znver4-2c-b4", ZEN4)
    with pytest.raises(NoLog, match="another architecture"):
        choose_log(tmp_path, "net", 2, host=ARM)
    assert choose_log(tmp_path, "net", 2, batch_size=4, host=ZEN5).log.key == "znver4-2c-b4"


def test_exact_only_and_named(tmp_path):
    make_log(tmp_path, "znver4-2c", ZEN4)
    with pytest.raises(NoLog, match="--tuning-log-exact"):
        choose_log(tmp_path, "net", 2, exact_only=True, host=ZEN5)
    named = choose_log(tmp_path, "net", 2, named="znver4-2c", host=ZEN5)
    assert named.transferred and named.why.startswith("named by --tuning-log")
    with pytest.raises(UsageError, match=r"--tuning-log znver9-2c: no such log for net \(stored: znver4-2c\)"):
        choose_log(tmp_path, "net", 2, named="znver9-2c", host=ZEN5)
    assert choose_log(tmp_path, "net", 2, named="znver4-2c", host=HASWELL).label == "log from znver4-2c, avx512 on avx2"
    make_log(tmp_path, "sapphirerapids-2c", SPR, record=AMX_RECORD)
    with pytest.raises(UsageError, match="--tuning-log sapphirerapids-2c: cannot run on haswell: .*amx-int8"):
        choose_log(tmp_path, "net", 2, named="sapphirerapids-2c", host=HASWELL)


def test_a_broken_exact_log_is_not_replaced_by_another(tmp_path):
    make_log(tmp_path, "znver4-2c", ZEN4)
    broken = make_log(tmp_path, "znver5-2c", ZEN5)
    (broken / "database_tuning_record.json").unlink()
    choice = choose_log(tmp_path, "net", 2, host=ZEN5)
    assert choice.log.key == "znver5-2c" and not choice.transferred  # the build then fails, naming the file


def test_a_damaged_nearest_log_is_chosen_and_then_fails_rather_than_replaced(tmp_path):
    make_log(tmp_path, "haswell-2c", HASWELL)
    nearest = make_log(tmp_path, "znver4-2c", ZEN4)
    for name in ("database_workload.json", "database_tuning_record.json"):
        (nearest / name).unlink()
    assert choose_log(tmp_path, "net", 2, host=ZEN5).log.key == "znver4-2c"


def test_no_logs_at_all(tmp_path):
    with pytest.raises(NoLog, match="no tuning log for net fits this CPU"):
        choose_log(tmp_path, "net", 2, host=ZEN5)
