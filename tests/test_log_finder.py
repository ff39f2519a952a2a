"""Which stored tuning log applies to which CPU: exact first, then the nearest compatible, never an unsafe one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpubench.errors import UsageError
from cpubench.log_finder import CpuProfile, NoLog, choose_log, incompatibility, stored_logs

AVX512 = ["avx", "avx2", "fma", "sse4.2", "avx512f", "avx512bw", "avx512vl", "avx512dq"]
ZEN4 = CpuProfile("znver4", "x86_64", frozenset(AVX512 + ["avx512vnni", "avx512bf16"]))
ZEN5 = CpuProfile("znver5", "x86_64", frozenset(AVX512 + ["avx512vnni", "avx512bf16", "avxvnni"]))
SPR = CpuProfile("sapphirerapids", "x86_64", frozenset(AVX512 + ["avx512vnni", "amx-int8", "amx-tile"]))
HASWELL = CpuProfile("haswell", "x86_64", frozenset(["avx", "avx2", "fma", "sse4.2"]))
ARM = CpuProfile("neoverse-v1", "aarch64", frozenset(["neon", "sve", "dotprod"]))
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
    make_log(tmp_path, "znver4-2c", ZEN4)
    with pytest.raises(NoLog, match=r"znver4-2c: its code needs avx512f, which haswell lacks"):
        choose_log(tmp_path, "net", 2, host=HASWELL)
    make_log(tmp_path, "haswell-2c", HASWELL)
    assert choose_log(tmp_path, "net", 2, host=SPR).log.key == "znver4-2c"  # same vector ISA first
    (tmp_path / "net" / "znver4-2c" / "metadata.json").unlink()  # old logs: LLVM knows znver4 by name
    assert choose_log(tmp_path, "net", 2, host=HASWELL).log.key == "haswell-2c"


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
    with pytest.raises(UsageError, match="--tuning-log znver4-2c: cannot run on haswell"):
        choose_log(tmp_path, "net", 2, named="znver4-2c", host=HASWELL)


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
