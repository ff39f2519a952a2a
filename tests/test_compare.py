"""`python -m cpubench.compare`: runs from several CPUs merged into one table per model, on small made-up files and on
the two committed runs (Zen 5 and Emerald Rapids)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cpubench.cache import relative_artifact_path
from cpubench.compare import main, reference_ratio
from cpubench.results_files import load_run, planned_rotations, relative_artifact_paths, rewrite_artifact_paths
from cpubench.stats import median_interval

REPO = Path(__file__).resolve().parent.parent
ZEN5 = REPO / "docs" / "results_znver5.json"
EMERALD = REPO / "docs" / "results_emeraldrapids.json"
ZEN3 = REPO / "docs" / "results_znver3.json"

ZEN5_MACHINE = {"cpu_name": "AMD EPYC", "llvm_cpu": "znver5", "vector_isa": "avx512", "isa_level": "x86-64-v4",
                "cpu_flags_bf16_amx_vnni": "avx512_bf16 avx512_vnni avx_vnni"}
AVX2_MACHINE = {"cpu_name": "Intel(R) Core(TM) i7-8700", "llvm_cpu": "skylake", "vector_isa": "avx2",
                "isa_level": "x86-64-v3", "cpu_flags_bf16_amx_vnni": ""}


def bench(model: str, variant: str, data: list[float], rotations: int | None = None,
          started: list[float] | None = None, **extra: Any) -> dict[str, Any]:
    """One benchmark as this suite's plugin writes it into --benchmark-json (only the fields compare reads)."""
    precision = next((p for p in ("bf16", "int8") if variant.endswith(f"-{p}")), "fp32")
    info = {"model": model, "variant": variant, "backend": variant.removesuffix(f"-{precision}"),
            "precision": precision, "threads": 2, "batch_size": 1, "top1": 285,
            "rounds_rotations": len(data) if rotations is None else rotations,
            "round_started_at": started if started is not None else [100.0 * r for r in range(len(data))], **extra}
    return {"name": f"test_inference[{model}-{variant}]", "extra_info": info,
            "stats": {"median": float(np.median(data)), "rounds": len(data), "data": data}}


def pb_file(path: Path, benchmarks: list[dict[str, Any]], machine: dict[str, Any] | None = None,
            when: str = "2026-12-02T13:21:30+00:00") -> Path:
    machine_info = {"node": "vm", "cpu": {"count": 2}, **(machine or ZEN5_MACHINE),
                    "backend_versions": {"onnxruntime": "1.32.0"}}
    path.write_text(json.dumps({"machine_info": machine_info, "commit_info": {"id": "fc0e15db"},
                                "benchmarks": benchmarks, "datetime": when, "version": "5.3.1"}, indent=4) + "\n")
    return path


def steady(ms: float, n: int = 10) -> list[float]:
    """`n` rounds near `ms` milliseconds, in seconds, a little different each round."""
    return [ms / 1e3 * (1 + 0.01 * ((i * 7) % 5 - 2)) for i in range(n)]


def cells(markdown: str, model: str, cpu: str) -> dict[str, str]:
    """The row of `cpu` (a piece of its label) in `model`'s table, column header -> cell."""
    section = markdown.split(f"### {model}\n", 1)[1].split("\n### ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    header = [h.strip() for h in table[0].strip("|").split(" | ")]
    row = next(line for line in table[1:] if cpu in line.split(" | ")[0])
    return dict(zip(header, (c.strip() for c in row.strip("|").split(" | ")), strict=True))


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------------ the two committed runs


def test_committed_runs_both_cpus_in_each_table_and_a_ratio_recomputed_by_hand():
    result = subprocess.run([sys.executable, "-m", "cpubench.compare", str(ZEN5), str(EMERALD)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for model in ("resnet18", "efficientnet_lite0"):
        assert cells(out, model, "znver5")["onnxruntime"].endswith("ms · 1.00×")
        assert cells(out, model, "emeraldrapids")["onnxruntime"].endswith("ms · 1.00×")

    # Zen 5 (pytest-benchmark JSON): openvino's rounds over ONNX Runtime's, rotation by rotation.
    benchmarks = {b["param"]: b for b in json.loads(ZEN5.read_text())["benchmarks"]}
    ov, ort = (benchmarks[f"resnet18-{v}"]["stats"]["data"] for v in ("openvino", "onnxruntime"))
    value, low, high = median_interval([a / b for a, b in zip(ov, ort, strict=True)])
    assert value == pytest.approx(float(np.median(np.array(ov) / np.array(ort))))
    cell = cells(out, "resnet18", "znver5")["openvino"]
    assert cell == f"{np.median(ov) * 1e3:.2f} ms · {value:.2f}× [{low:.2f}, {high:.2f}]"

    # Emerald Rapids (report.json): rounds keyed by rotation, paired on the keys.
    results = {(r["model"], r["backend"]): r for r in json.loads(EMERALD.read_text())["results"]}
    num, den = results[("efficientnet_lite0", "openvino-int8")]["rounds"], \
        results[("efficientnet_lite0", "onnxruntime")]["rounds"]
    value, low, high = median_interval([num[k] / den[k] for k in sorted(num, key=int)])
    assert f"{value:.2f}× [{low:.2f}, {high:.2f}]" in cells(out, "efficientnet_lite0", "emeraldrapids")["openvino-int8"]


def test_ratios_rebuilt_from_benchmark_json_equal_the_runs_own_report():
    """The Zen 5 run's report.json, written by the run itself from rounds keyed by rotation, holds every ratio: the
    ones rebuilt from pytest-benchmark's JSON equal them, untuned TVM's 5 and 14 rounds among 60 rotations too."""
    run = load_run(ZEN5)
    stored = json.loads((REPO / "docs" / "results_znver5_report.json").read_text())["ratios_vs_onnxruntime"]
    partial = [r for r in run.rows if len(r.rounds) < 60]
    assert {(r.variant, len(r.rounds)) for r in partial} == {("tvm", 5), ("tvm", 14)}
    assert not run.unpaired
    for row in run.rows:
        ratio = reference_ratio(run, row)
        assert ratio is not None
        assert stored[f"{row.model}-{row.variant}"] == {"value": ratio.value, "low": ratio.low, "high": ratio.high,
                                                        "pairs": ratio.pairs}


@pytest.mark.parametrize("source", [ZEN3, REPO / "docs" / "results_znver3_report.json"], ids=["benchmark-json",
                                                                                           "report-json"])
def test_intervals_rebuilt_from_either_file_resample_processes_as_the_runs_own_report(source):
    """The Zen 3 run's intervals resample worker processes, then blocks of rotations: rebuilt from either file (the
    process of each round is `round_process` in pytest-benchmark's JSON, `processes` in report.json), every ratio and
    interval equals the report's. Without the processes, 24 of the 26 intervals of the run of 2026-12-03 came out
    otherwise."""
    run = load_run(source)
    stored = json.loads((REPO / "docs" / "results_znver3_report.json").read_text())["ratios_vs_onnxruntime"]
    assert any(len(set(row.processes.values())) > 1 for row in run.rows)
    for row in run.rows:
        ratio = reference_ratio(run, row)
        assert stored[f"{row.model}-{row.variant}"] == {"value": ratio.value, "low": ratio.low, "high": ratio.high,
                                                        "pairs": ratio.pairs}


def test_planned_rotations_space_rounds_as_the_schedule_does():
    from cpubench.schedule import plan_rotations

    for seconds_per_call in (0.01, 0.3, 0.6, 1.7, 2.4, 3.5):
        plan = plan_rotations({"v": seconds_per_call}, seconds_per_variant=3.0, round_seconds=0.05, min_rounds=5)
        assert planned_rotations(60, len(plan["v"])) == plan["v"]
    assert planned_rotations(60, 9) == [0, 7, 15, 22, 30, 37, 44, 52, 59]  # the Emerald Rapids run's TVM, keyed


# ------------------------------------------------------------------------------------------------- made-up runs


def test_runs_of_different_models_and_precisions_merge(tmp_path, capsys):
    zen = pb_file(tmp_path / "zen.json", [bench("resnet18", "onnxruntime", steady(9.0)),
                                          bench("resnet18", "openvino-bf16", steady(4.5)),
                                          bench("resnet18", "openvino", steady(8.8))])
    avx2 = pb_file(tmp_path / "avx2.json", [bench("resnet18", "onnxruntime", steady(20.0)),
                                            bench("resnet18", "onnxruntime-int8", steady(7.0)),
                                            bench("efficientnet_lite0", "onnxruntime", steady(5.0))],
                   machine=AVX2_MACHINE)
    code, out, err = run_main(capsys, zen, avx2)
    assert code == 0, err
    header = next(line for line in out.split("### resnet18")[1].splitlines() if line.startswith("| CPU"))
    assert header == "| CPU | onnxruntime | openvino | openvino-bf16 | onnxruntime-int8 |"  # fp32, bf16, int8
    zen_row, avx2_row = cells(out, "resnet18", "znver5"), cells(out, "resnet18", "skylake")
    assert zen_row["onnxruntime"] == "9.00 ms · 1.00×"
    assert zen_row["onnxruntime-int8"] == "—"
    assert avx2_row["openvino-bf16"] == "— (no native bf16)"  # no bf16 flag: the suite skips bf16 there
    assert avx2_row["openvino"] == "—"
    assert avx2_row["onnxruntime-int8"].startswith("7.00 ms · 0.35× [")
    assert "AMD EPYC (znver5, AVX-512+BF16+VNNI, 2 CPUs, 2 threads)" in out
    assert "Intel Core i7-8700 (skylake, AVX2, 2 CPUs, 2 threads)" in out
    # efficientnet_lite0 only ran on one of them: its table has that CPU's row alone
    effnet = out.split("### efficientnet_lite0")[1]
    assert "skylake" in effnet and "| AMD EPYC" not in effnet
    assert "- **bf16**: on znver5 the fastest bf16 backend is **openvino-bf16**" in out


def test_verdicts_per_cpu_name_ties_and_the_variant_fastest_everywhere(tmp_path, capsys):
    base = steady(10.0, 12)
    tied = [v * (1.004 if i % 2 else 0.994) for i, v in enumerate(base)]  # within a percent, either way
    a = pb_file(tmp_path / "a.json", [bench("m", "onnxruntime", base), bench("m", "openvino", tied),
                                      bench("m", "torch", steady(20.0, 12))])
    b = pb_file(tmp_path / "b.json", [bench("m", "onnxruntime", steady(10.0, 12)),
                                      bench("m", "openvino", steady(8.0, 12))], machine=AVX2_MACHINE)
    code, out, _ = run_main(capsys, a, b)
    assert code == 0
    fp32 = next(line for line in out.splitlines() if line.startswith("- **fp32**"))
    assert "on znver5 the fastest fp32 backend is **" in fp32 and "tied with" in fp32
    assert "on skylake the fastest fp32 backend is **openvino**, 8.00 ms (0.80× [" in fp32
    assert fp32.endswith("Fastest or tied on every CPU: openvino.")


def test_two_runs_of_one_machine_are_both_shown_by_date_else_by_file_name(tmp_path, capsys):
    first = pb_file(tmp_path / "monday.json", [bench("m", "onnxruntime", steady(9.0))],
                    when="2026-12-01T09:00:00+00:00")
    second = pb_file(tmp_path / "tuesday.json", [bench("m", "onnxruntime", steady(9.5))],
                     when="2026-12-02T09:00:00+00:00")
    code, out, _ = run_main(capsys, first, second)
    assert code == 0
    assert cells(out, "m", "2026-12-01 09:00 UTC")["onnxruntime"] == "9.00 ms · 1.00×"
    assert cells(out, "m", "2026-12-02 09:00 UTC")["onnxruntime"] == "9.50 ms · 1.00×"

    same_day = pb_file(tmp_path / "again.json", [bench("m", "onnxruntime", steady(9.2))],
                       when="2026-12-01T09:00:00+00:00")
    code, out, _ = run_main(capsys, first, same_day)
    assert code == 0
    assert cells(out, "m", "monday.json")["onnxruntime"] == "9.00 ms · 1.00×"
    assert cells(out, "m", "again.json")["onnxruntime"] == "9.20 ms · 1.00×"


def test_a_slow_variant_is_paired_by_rotation_when_the_clock_confirms_it(tmp_path, capsys):
    rotations = 11
    ort = [0.010 + 0.001 * r for r in range(rotations)]  # drifts: only pairing by rotation gives a steady ratio
    at = planned_rotations(rotations, 3)
    assert at == [0, 5, 10]
    slow = [2 * ort[r] for r in at]
    clock = [100.0 * r for r in range(rotations)]
    good = pb_file(tmp_path / "good.json", [
        bench("m", "onnxruntime", ort, started=clock),
        bench("m", "tvm", slow, rotations=rotations, started=[100.0 * r + 50 for r in at])])
    run = load_run(good)
    tvm = run.row("m", "tvm")
    assert tvm.rounds == dict(zip(at, slow, strict=True))
    ratio = reference_ratio(run, tvm)
    assert (ratio.value, ratio.pairs) == (pytest.approx(2.0), 3)

    # The same rounds stamped in other rotations (the middle one in the rotation before its planned one)
    bad = pb_file(tmp_path / "bad.json", [
        bench("m", "onnxruntime", ort, started=clock),
        bench("m", "tvm", slow, rotations=rotations, started=[50.0, 350.0, 1050.0])])
    run = load_run(bad)
    assert run.row("m", "tvm").rounds == {}
    ratio = reference_ratio(run, run.row("m", "tvm"))
    assert ratio.pairs == 0 and ratio.value == pytest.approx(float(np.median(slow)) / float(np.median(ort)))
    code, out, _ = run_main(capsys, bad)
    assert code == 0
    assert cells(out, "m", "znver5")["tvm"] == f"{np.median(slow) * 1e3:.2f} ms · {ratio.value:.2f}×†"
    assert "† znver5 tvm: ratio of the two medians, not of paired rounds: the file does not confirm which of the " \
           "11 rotations its 3 rounds belong to." in out


def test_a_file_without_per_round_data_falls_back_to_the_ratio_of_medians(tmp_path, capsys):
    benchmarks = [bench("m", "onnxruntime", steady(9.0)), bench("m", "openvino", steady(8.1))]
    for b in benchmarks:
        del b["stats"]["data"]  # what --benchmark-autosave keeps without --benchmark-save-data
    code, out, _ = run_main(capsys, pb_file(tmp_path / "saved.json", benchmarks))
    assert code == 0
    assert cells(out, "m", "znver5")["openvino"] == "8.10 ms · 0.90×†"
    assert "the file keeps no per-round data" in out


def test_a_report_json_run_and_its_untimed_row(tmp_path, capsys):
    rounds = {str(r): 0.009 for r in range(5)}
    report = {"machine": ZEN5_MACHINE, "versions": {}, "threads": 2, "batch_size": 1, "results": [
        {"model": "m", "backend": "onnxruntime", "top1": 1, "timing": {"median": 0.009}, "context": {},
         "rounds": rounds},
        {"model": "m", "backend": "litert", "top1": 1, "timing": None, "context": {}, "rounds": {}}]}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    code, out, _ = run_main(capsys, path)
    assert code == 0
    row = cells(out, "m", "znver5")
    assert row == {"CPU": "AMD EPYC (znver5, AVX-512+BF16+VNNI, 2 threads)", "onnxruntime": "9.00 ms · 1.00×",
                   "litert": "— (not timed)"}


def test_tuned_tvm_names_its_log_in_the_header_or_in_each_cell(tmp_path, capsys):
    def run_with(name: str, log: str, machine: dict[str, Any]) -> Path:
        return pb_file(tmp_path / name, [bench("m", "onnxruntime", steady(9.0)),
                                         bench("m", "tvm-tuned", steady(10.0), tuning_log_label=log)], machine)

    same = run_with("a.json", "log from znver4-2c", ZEN5_MACHINE), run_with("b.json", "log from znver4-2c",
                                                                               AVX2_MACHINE)
    code, out, _ = run_main(capsys, *same)
    assert code == 0 and "| tvm-tuned (log from znver4-2c) |" in out
    other = run_with("c.json", "log from x86-64-v3-2c", AVX2_MACHINE)
    code, out, _ = run_main(capsys, same[0], other)
    assert code == 0
    assert cells(out, "m", "skylake")["tvm-tuned"].endswith("(log from x86-64-v3-2c)")
    assert cells(out, "m", "znver5")["tvm-tuned"].endswith("(log from znver4-2c)")


def test_out_writes_the_same_markdown(tmp_path, capsys):
    target = tmp_path / "merged.md"
    code, out, _ = run_main(capsys, pb_file(tmp_path / "a.json", [bench("m", "onnxruntime", steady(9.0))]),
                            "--out", target)
    assert code == 0
    assert target.read_text() == out


# ----------------------------------------------------------------------------------------------------- bad input


def _other_suite(path: Path) -> None:
    path.write_text(json.dumps({"machine_info": {"node": "x"}, "benchmarks": [
        {"name": "test_sort", "extra_info": {}, "stats": {"median": 0.1, "data": [0.1]}}]}))


@pytest.mark.parametrize(("write", "says"), [
    (lambda p: p.write_text("model,ms\nresnet18,9.0\n"), "not JSON (Expecting value at line 1, column 1)"),
    (lambda p: p.write_text(""), "not JSON"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe"), "not JSON (not UTF-8 text)"),
    (lambda p: p.write_text("[1, 2, 3]"), "JSON, but not a result of cpubench"),
    (lambda p: p.write_text(json.dumps({"log": "x", "runs": []})), "JSON, but not a result of cpubench"),
    (_other_suite, "a pytest-benchmark file from another suite"),
    (lambda p: p.write_text(json.dumps({"machine": {"llvm_cpu": "znver5"}, "results": [{"backend": "x"}]})),
     "a damaged cpubench result (KeyError: 'model')"),
    (lambda p: p.write_text(json.dumps({"machine": {"llvm_cpu": "znver5"}, "results": [
        {"model": "m", "backend": "onnxruntime", "timing": {"mean": 0.01}}]})),
     "a damaged cpubench result (KeyError: 'median')"),
    (lambda p: p.write_text(json.dumps({"machine": {"llvm_cpu": "znver5"}, "results": []})),
     "a cpubench result with no timed benchmark in it"),
])
def test_bad_input_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys, write, says):
    good = pb_file(tmp_path / "good.json", [bench("m", "onnxruntime", steady(9.0))])
    bad = tmp_path / "bad.json"
    write(bad)
    code, out, err = run_main(capsys, good, bad)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"cpubench.compare: {bad}: ") and says in err
    assert "Traceback" not in err


def test_a_missing_file_is_named_too(tmp_path, capsys):
    code, _, err = run_main(capsys, tmp_path / "nowhere.json")
    assert code == 2
    assert err == f"cpubench.compare: {tmp_path / 'nowhere.json'}: cannot read it (No such file or directory)\n"


# ------------------------------------------------------------------------------------------------ artifact paths


def test_absolute_artifact_paths_become_relative_to_the_cache(tmp_path):
    cache = tmp_path / "cache"
    key = "91e708928ffc4751cd69"
    assert relative_artifact_path(str(cache / "onnx" / f"resnet18-{key}.onnx"), cache) == \
        f".cache/onnx/resnet18-{key}.onnx"
    # another machine's checkout, default cache
    assert relative_artifact_path(f"/home/me/cpubench/.cache/tvm/resnet18-tvm-tuned-{key}.so", cache) == \
        f".cache/tvm/resnet18-tvm-tuned-{key}.so"
    # another machine's CPUBENCH_CACHE, told by the cache's own file names
    assert relative_artifact_path(f"/mnt/scratch/torch-compile/resnet18-{key}.pt2", cache) == \
        f".cache/torch-compile/resnet18-{key}.pt2"
    for unchanged in (f".cache/onnx/resnet18-{key}.onnx", "/data/models/resnet18.onnx"):
        assert relative_artifact_path(unchanged, cache) == unchanged


def test_rewrite_artifact_paths_in_a_results_file(tmp_path):
    key = "e03b181d0d83b623fd80"
    benchmarks = [bench("m", "onnxruntime", steady(9.0), artifact=f"/work/main/.cache/onnx/m-{key}.onnx"),
                  bench("m", "torch", steady(9.0), artifact=None)]
    path = pb_file(tmp_path / "run.json", benchmarks)
    assert rewrite_artifact_paths(path) == 1
    text = path.read_text()
    assert json.loads(text)["benchmarks"][0]["extra_info"]["artifact"] == f".cache/onnx/m-{key}.onnx"
    assert text.startswith('{\n    "machine_info"') and text.endswith("}\n")  # pytest-benchmark's layout kept
    report = {"results": [{"context": {"artifact": f"/srv/x/.cache/int8/m-{key}.onnx"}}]}
    assert relative_artifact_paths(report) == 1
    assert report["results"][0]["context"]["artifact"] == f".cache/int8/m-{key}.onnx"


def test_a_file_with_relative_paths_is_left_byte_for_byte(tmp_path):
    copy = tmp_path / "zen5.json"
    copy.write_bytes(ZEN5.read_bytes())
    assert rewrite_artifact_paths(copy) == 0
    assert copy.read_bytes() == ZEN5.read_bytes()


def test_an_int8_format_chosen_by_the_cpu_is_named_under_its_table(tmp_path, capsys):
    """A CPU without VNNI runs the ONNX file with uint8 weights (quantize.py): the merged table says so for that CPU,
    so its int8 column is not read as the same file as another CPU's."""
    u8u8 = {"quantization_weights": "uint8 per channel (U8U8: uint8 x int8 kernels without VNNI saturate)",
            "cpu_int8_dot_product": "none (no VNNI or AMX)"}
    avx2 = pb_file(tmp_path / "avx2.json", [bench("m", "onnxruntime", steady(10.0)),
                                           bench("m", "onnxruntime-int8", steady(30.0), **u8u8)], AVX2_MACHINE)
    vnni = pb_file(tmp_path / "vnni.json", [bench("m", "onnxruntime", steady(5.0)),
                                           bench("m", "onnxruntime-int8", steady(2.0))])
    code, out, err = run_main(capsys, avx2, vnni)
    assert code == 0, err
    notes = [line for line in out.splitlines() if "int8 formats" in line]
    assert len(notes) == 1 and "skylake" in notes[0]
    assert "onnxruntime-int8: weights uint8 per channel (U8U8" in notes[0] and "none (no VNNI or AMX)" in notes[0]
