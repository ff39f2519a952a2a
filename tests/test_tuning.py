"""Tuning end to end on a tiny model: store, apply, coverage, corruption, interruption, RPC."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from tiny import TINY_SHAPE, tiny_relax

from cpubench import tvm_support as tv
from cpubench.errors import UsageError
from cpubench.tuning import TuneBudget, count_records, tune_model
from cpubench.winograd import DIRECT

REPO = Path(__file__).resolve().parent.parent


def lowered_tiny(onnx_path, threads=1, lowering=DIRECT):
    """The tiny model lowered as `tune_model` lowers it by default (direct; the tiny tuning stays fast)."""
    target = tv.host_target(threads)
    return tv.lower_for_tuning(tiny_relax(onnx_path), target, lowering), target


def test_tuning_stores_pruned_log_with_metadata(tiny_tuned):
    outcome, lines = tiny_tuned
    log_dir = outcome.log_dir
    assert log_dir.name == tv.target_key(tv.host_target(1))
    assert {p.name for p in log_dir.iterdir()} == {*tv.DB_FILES, tv.METADATA_FILE}
    meta = json.loads((log_dir / tv.METADATA_FILE).read_text())
    for key in ("tvm_version", "target", "cpu", "trials", "date", "model_latency_ms", "trials_per_minute"):
        assert meta[key] is not None, key
    assert meta["model_latency_ms"] > 0
    # Pruned: one record per workload.
    records = (log_dir / tv.DB_FILES[1]).read_text().splitlines()
    workloads = (log_dir / tv.DB_FILES[0]).read_text().splitlines()
    assert len(records) == len(workloads) == len(meta["tasks"])
    assert any("trials/min" in line and "best model" in line for line in lines), lines


def test_stored_log_applies_with_full_coverage(tiny_tuned, tiny_onnx):
    outcome, _ = tiny_tuned
    lowered, target = lowered_tiny(tiny_onnx)
    applied, coverage = tv.apply_database(lowered, target, tv.open_database(outcome.log_dir))
    assert coverage.complete and coverage.covered == len(coverage.tunable) > 0
    assert tv.tunable_functions(applied) == []


def test_breakdown_sets_each_call_beside_the_tuners_timing(tiny_tuned, tiny_onnx):
    from cpubench.tuning.breakdown import breakdown

    outcome, _ = tiny_tuned
    lowered, target = lowered_tiny(tiny_onnx)
    result = breakdown(lowered, target, outcome.log_dir, TINY_SHAPE, repeat=3)
    assert result["model_ms"] > 0 and result["tuner_estimate_ms"] > 0 and result["untuned_kernels_ms"] == 0
    kernels = {r["function"].removesuffix("_prepacked") for r in result["functions"] if r["kind"] == "tuned kernel"}
    assert kernels == set(tv.tunable_functions(lowered))  # every tuned function was called and recognised
    assert all(r["tuner_us"] is not None for r in result["functions"] if r["kind"] == "tuned kernel")
    assert result["calls_per_run"] >= len(kernels)
    assert not (outcome.log_dir.parent / f".{outcome.log_dir.name}-breakdown.so").exists()  # throwaway removed


def test_stripped_log_names_the_functions_without_records(tiny_tuned, tiny_onnx, tmp_path):
    outcome, _ = tiny_tuned
    stripped = tmp_path / "stripped"
    shutil.copytree(outcome.log_dir, stripped)
    records = (stripped / tv.DB_FILES[1]).read_text().splitlines()
    (stripped / tv.DB_FILES[1]).write_text("\n".join(records[1:]) + "\n")
    lowered, target = lowered_tiny(tiny_onnx)
    _, coverage = tv.apply_database(lowered, target, tv.open_database(stripped))
    assert len(coverage.missing) == 1
    assert coverage.missing[0] in coverage.tunable


def test_tvm_tuned_backend_refuses_incomplete_log(tiny_tuned, tiny_onnx, tmp_path, monkeypatch):
    from tiny import tiny_model

    from cpubench.backends import LoadContext, create_backend

    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path / "cache"))
    outcome, _ = tiny_tuned
    logs = tmp_path / "logs"
    shutil.copytree(outcome.log_dir, logs / "tiny" / outcome.log_dir.name)
    record_file = logs / "tiny" / outcome.log_dir.name / tv.DB_FILES[1]
    record_file.write_text("\n".join(record_file.read_text().splitlines()[1:]) + "\n")
    ctx = LoadContext(model=tiny_model(), onnx_path=tiny_onnx, threads=1, tuning_logs=logs)
    with pytest.raises(UsageError) as err:
        create_backend("tvm-tuned").load(ctx)
    message = str(err.value)
    assert "has no record for 1 of" in message and "pytest -m tune --models tiny" in message


def test_tvm_tuned_backend_runs_with_complete_log(tiny_tuned, tiny_onnx, tmp_path, monkeypatch):
    import numpy as np
    from tiny import tiny_model

    from cpubench.backends import LoadContext, create_backend

    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path / "cache"))
    outcome, _ = tiny_tuned
    model = tiny_model()
    ctx = LoadContext(model=model, onnx_path=tiny_onnx, threads=1, tuning_logs=outcome.log_dir.parent.parent)
    backend = create_backend("tvm-tuned")
    backend.load(ctx)
    assert ctx.info["tuning_coverage"].startswith(f"{ctx.info['tunable_functions']}/")
    assert ctx.info["tvm_lowering"] == "direct" == json.loads((outcome.log_dir / tv.METADATA_FILE).read_text())[
        "lowering"]
    x = np.random.default_rng(0).standard_normal(TINY_SHAPE).astype("float32")
    import torch

    expected = model.module(torch.from_numpy(x)).detach().numpy()
    got = backend.to_numpy(backend.forward(backend.prepare_inputs(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_the_logs_metadata_decides_how_convolutions_are_compiled(tiny_tuned, tiny_onnx, tmp_path, monkeypatch):
    """A direct log said to be Winograd: compiled with the tiny model's 28x28 convolution as Winograd, which has no
    record, and the build says so."""
    from tiny import tiny_model

    from cpubench.backends import LoadContext, create_backend

    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path / "cache"))
    outcome, _ = tiny_tuned
    logs = tmp_path / "logs"
    copy = logs / "tiny" / outcome.log_dir.name
    shutil.copytree(outcome.log_dir, copy)
    meta = json.loads((copy / tv.METADATA_FILE).read_text())
    (copy / tv.METADATA_FILE).write_text(json.dumps({**meta, "lowering": "winograd"}))
    ctx = LoadContext(model=tiny_model(), onnx_path=tiny_onnx, threads=1, tuning_logs=logs)
    with pytest.raises(UsageError, match=r"has no record for 1 of .*conv2d_winograd"):
        create_backend("tvm-tuned").load(ctx)
    assert ctx.info["tuning_log_label"].endswith(", Winograd 3x3") and ctx.info["tvm_lowering"] == "winograd"


def test_corrupt_log_names_the_file(tiny_tuned, tmp_path):
    outcome, _ = tiny_tuned
    broken = tmp_path / "broken"
    shutil.copytree(outcome.log_dir, broken)
    path = broken / tv.DB_FILES[1]
    path.write_text(path.read_text()[: len(path.read_text()) // 2] + "\n")
    with pytest.raises(UsageError, match=str(path)):
        tv.open_database(broken)
    missing = tmp_path / "missing"
    shutil.copytree(outcome.log_dir, missing)
    (missing / tv.DB_FILES[0]).unlink()
    with pytest.raises(UsageError, match="database_workload.json is missing"):
        tv.open_database(missing)


def other_cpu_of_this_arch() -> str:
    """An LLVM CPU name of this machine's architecture with a baseline vector ISA: any host can run its logs."""
    from cpubench.log_finder import cpu_profile

    return "x86-64" if cpu_profile().arch == "x86_64" else "generic"


def test_warm_start_seeds_from_the_nearest_log_and_leaves_it_untouched(tiny_tuned, tiny_onnx, tmp_path):
    outcome, _ = tiny_tuned
    logs = tmp_path / "logs"
    source_key = f"{other_cpu_of_this_arch()}-1c"
    source = logs / "tiny" / source_key
    shutil.copytree(outcome.log_dir, source)
    second_key = f"{other_cpu_of_this_arch()}-4c"  # a second compatible log: a second seed for every task
    shutil.copytree(outcome.log_dir, logs / "tiny" / second_key)
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    lines: list[str] = []
    warm = tune_model(model_name="tiny", relax_mod=tiny_relax(tiny_onnx), input_shape=TINY_SHAPE,
                      tuning_logs=logs, threads=1, work_dir=tmp_path / "work", seed=3, emit=lines.append,
                      budget=TuneBudget(trials=8, trials_per_task=4, trials_per_iter=4, remeasure_top_k=1,
                                        population=16),
                      reference=lambda: ("fake-reference", 1.0))
    meta = warm.metadata
    assert meta["warm_start_from"] == source_key  # the nearest: same core count
    assert meta["warm_start"]["sources"] == [source_key, second_key]
    assert meta["warm_start"]["seeds"] == 2 * len(meta["tasks"]) > 0
    assert all(us is not None for us in meta["warm_start"]["seed_us"].values())
    assert set(meta["warm_start"]["seed_from"].values()) <= {source_key, second_key}
    assert any(line.startswith(f"[seed {second_key}] ") for line in lines), lines
    assert meta["searched_tasks"] and set(meta["searched_tasks"]) <= {t["task"] for t in meta["tasks"]}
    # The estimate is complete before the first candidate: every task starts from its re-timed seed.
    assert meta["progress"][0][1] == 0 and meta["progress"][0][2] > 0
    assert meta["trials"] <= 8 and meta["ratio_to_reference"] == pytest.approx(meta["model_latency_ms"], rel=1e-3)
    assert meta["arch"] and meta["vector_isa"] and meta["cpu_features"] is not None
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    assert warm.log_dir.name == tv.target_key(tv.host_target(1))


def test_tune_target_stores_a_log_for_an_isa_level_that_this_cpu_then_prefers(tiny_tuned, tiny_onnx, tmp_path):
    """`--tune-target x86-64-v3` (here: this CPU's own ISA level): code for the level, timed here, stored under the
    level's key with the machine it was timed on, warm-started from the stored log; the finder then prefers it to
    any other CPU's log."""
    from cpubench import machine
    from cpubench.log_finder import choose_log

    host = machine.cpu_profile()
    if host.isa_level is None:
        pytest.skip("ISA levels exist on x86-64 only")
    outcome, _ = tiny_tuned
    logs = tmp_path / "logs"
    other = f"{other_cpu_of_this_arch()}-1c"
    shutil.copytree(outcome.log_dir, logs / "tiny" / other)
    tuned = tune_model(model_name="tiny", relax_mod=tiny_relax(tiny_onnx), input_shape=TINY_SHAPE,
                       tuning_logs=logs, threads=1, work_dir=tmp_path / "work", seed=5, emit=lambda line: None,
                       budget=TuneBudget(trials=4, trials_per_task=4, trials_per_iter=4, remeasure_top_k=1,
                                         population=16),
                       tune_target=host.isa_level)
    meta = tuned.metadata
    assert tuned.log_dir.name == f"{host.isa_level}-1c" and meta["cpu"] == host.isa_level
    assert json.loads(meta["target"])["mcpu"] == host.isa_level
    assert meta["timed_on"]["cpu"] == host.name and meta["timed_on"]["cpu_model"]
    assert meta["vector_isa"] == machine.cpu_profile(host.isa_level).vector_isa
    assert meta["warm_start_from"] == other and meta["model_latency_ms"] > 0
    choice = choose_log(logs, "tiny", 1, host=replace(host, name="some-cpu-without-a-log"))
    assert choice.log.key == f"{host.isa_level}-1c" and "this CPU's ISA level" in choice.why
    with pytest.raises(UsageError, match="--tune-target no-such-cpu"):
        tune_model(model_name="tiny", relax_mod=tiny_relax(tiny_onnx), input_shape=TINY_SHAPE, tuning_logs=logs,
                   threads=1, budget=TuneBudget(trials=4), tune_target="no-such-cpu")


def test_tvm_tuned_uses_a_transferred_log_and_says_so(tiny_tuned, tiny_onnx, tmp_path, monkeypatch):
    from tiny import tiny_model

    from cpubench.backends import BackendUnavailable, LoadContext, create_backend

    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path / "cache"))
    outcome, _ = tiny_tuned
    logs = tmp_path / "logs"
    key = f"{other_cpu_of_this_arch()}-1c"
    shutil.copytree(outcome.log_dir, logs / "tiny" / key)
    ctx = LoadContext(model=tiny_model(), onnx_path=tiny_onnx, threads=1, tuning_logs=logs)
    create_backend("tvm-tuned").load(ctx)
    assert ctx.info["tuning_log_cpu"] == key and ctx.info["tuning_log_transferred"] is True
    assert ctx.info["tuning_log_label"] == f"log from {key}"
    assert ctx.info["tuning_coverage"].startswith(f"{ctx.info['tunable_functions']}/")
    exact = LoadContext(model=tiny_model(), onnx_path=tiny_onnx, threads=1, tuning_logs=logs, tuning_log_exact=True)
    with pytest.raises(BackendUnavailable, match=r"--tuning-log-exact refuses the others.*pytest -m tune"):
        create_backend("tvm-tuned").load(exact)
    named = LoadContext(model=tiny_model(), onnx_path=tiny_onnx, threads=1, tuning_logs=logs, tuning_log_name=key)
    create_backend("tvm-tuned").load(named)
    assert named.info["tuning_log_choice"].startswith("named by --tuning-log")


def test_missing_log_skips_with_the_command_to_make_one(tiny_onnx, tmp_path):
    from tiny import tiny_model

    from cpubench.backends import BackendUnavailable, LoadContext, create_backend

    ctx = LoadContext(model=tiny_model(), onnx_path=tiny_onnx, threads=1, tuning_logs=tmp_path)
    with pytest.raises(BackendUnavailable, match=r"pytest -m tune --models tiny"):
        create_backend("tvm-tuned").load(ctx)


TUNE_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from tiny import TINY_SHAPE, tiny_relax
from cpubench.tuning import TuneBudget, tune_model
tune_model(model_name="tiny", relax_mod=tiny_relax(Path({onnx!r})), input_shape=TINY_SHAPE,
           tuning_logs=Path({logs!r}), threads=1, work_dir=Path({work!r}), seed=1, warm_start=False,
           budget=TuneBudget(trials={trials}, trials_per_task=64, trials_per_iter=4, remeasure_top_k=1, population=16),
           emit=lambda line: print(line, flush=True), lowering="direct")  # Winograd candidates build slower
"""


def run_tune_script(tmp_path, tiny_onnx, logs, work, trials):
    script = tmp_path / "tune.py"
    script.write_text(TUNE_SCRIPT.format(tests=str(Path(__file__).parent), onnx=str(tiny_onnx), logs=str(logs),
                                         work=str(work), trials=trials))
    return subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_interrupted_tuning_leaves_stored_log_untouched_and_resumes(tiny_tuned, tiny_onnx, tmp_path):
    outcome, _ = tiny_tuned
    logs = tmp_path / "logs"
    stored = logs / "tiny" / outcome.log_dir.name
    shutil.copytree(outcome.log_dir, stored)
    before = {p.name: p.read_bytes() for p in stored.iterdir()}
    work = tmp_path / "work"
    proc = run_tune_script(tmp_path, tiny_onnx, logs, work, trials=400)
    deadline = time.monotonic() + 240
    while count_records(work) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, f"tuning ended before it could be interrupted:\n{proc.communicate()[0]}"
    os.killpg(proc.pid, signal.SIGKILL)  # the harshest interruption: no handler runs
    proc.wait()
    after = {p.name: p.read_bytes() for p in stored.iterdir()}
    assert after == before
    assert not [p for p in stored.parent.iterdir() if p.name != stored.name and not p.name.startswith(".")]
    measured = count_records(work)
    assert measured >= 4
    # The rerun resumes: it counts what the killed run measured and plans only the rest (16, so that every task
    # gets a record). Its finalists are re-timed in one build and one run, no longer one of each per task: that
    # is what made it outlast 300 s on a Zen 3.
    proc = run_tune_script(tmp_path, tiny_onnx, logs, work, trials=measured + 16)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    assert f"{measured} candidates already measured" in output and ", 16 to go" in output
    assert (stored / tv.METADATA_FILE).read_bytes() != before[tv.METADATA_FILE]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(probe, what: str, timeout_s: float = 90.0) -> None:
    """Retry `probe` until it stops raising: the tracker and server import TVM first, slow on a busy machine."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            probe()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not up after {timeout_s:.0f} s") from None
            time.sleep(0.5)


def test_tuning_through_rpc_tracker(tiny_onnx, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tracker = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                                "--port", str(port), "--port-end", str(port + 1)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    server = None
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close(), "tracker")
        server = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1",
                                   "--tracker", f"127.0.0.1:{port}", "--key", "test-board"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        from tvm import rpc

        def board_registered():
            summary = rpc.connect_tracker("127.0.0.1", port).summary()
            assert "test-board" in summary.get("queue_info", {}), summary

        wait_for(board_registered, "rpc server registration")
        lines: list[str] = []
        outcome = tune_model(model_name="tiny", relax_mod=tiny_relax(tiny_onnx), input_shape=TINY_SHAPE,
                             tuning_logs=tmp_path / "logs", threads=1, work_dir=tmp_path / "work", seed=2,
                             budget=TuneBudget(trials=16, trials_per_task=4, trials_per_iter=4, remeasure_top_k=1,
                                               population=16),
                             rpc_tracker=("127.0.0.1", port), rpc_key="test-board", emit=lines.append,
                             lowering="direct")  # the RPC path is what is tested; direct candidates build faster
        meta = outcome.metadata
        assert meta["measured_on"] == f"rpc 127.0.0.1:{port} key test-board"
        assert meta["trials"] >= 4 and meta["coverage"].startswith(str(len(meta["tasks"])))
    finally:
        for proc in (server, tracker):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_unreachable_tracker_is_a_clear_error(tiny_onnx, tmp_path):
    with pytest.raises(UsageError, match=r"--rpc-tracker 127\.0\.0\.1:\d+: cannot reach"):
        tune_model(model_name="tiny", relax_mod=tiny_relax(tiny_onnx), input_shape=TINY_SHAPE,
                   tuning_logs=tmp_path / "logs", threads=1, work_dir=tmp_path / "work",
                   budget=TuneBudget(trials=4), rpc_tracker=("127.0.0.1", free_port()), rpc_key="nobody",
                   emit=lambda line: None)


def test_a_tuning_process_registers_x86s_tensor_intrinsics_and_not_every_gpus():
    """import_tensor_intrinsics: x86's intrinsics (VNNI dot products, which MetaSchedule's x86 rules use) are
    registered, CUDA's (15 s of import) are not, and TuneContext then finds the package already imported."""
    script = ("import sys\nfrom cpubench import tvm_support as tv\ntv.import_tensor_intrinsics(tv.host_target(1))\n"
              "from tvm.s_tir import TensorIntrin\nassert TensorIntrin.get('dot_16x4_vnni') is not None\n"
              "assert 'tvm.s_tir.tensor_intrin.cuda' not in sys.modules, 'the whole package was imported'\n"
              "import tvm.s_tir.tensor_intrin\nassert 'tvm.s_tir.tensor_intrin.cuda' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_build_pool_keeps_its_processes_and_restarts_one_that_timed_out():
    """BuildPool: every call runs in one of the pool's processes, started once (MetaSchedule's LocalBuilder started
    new ones for every round, each importing TVM); a job past its timeout ends its process, and the next job gets
    a fresh one; a candidate that does not compile is a BuilderResult with the error, not an exception."""
    from tvm.s_tir import meta_schedule as ms

    from cpubench.tuning.adapters import BuildPool

    with BuildPool(processes=2) as pool:
        pool.ready()
        pids = {pool.call(os.getpid) for _ in range(6)}
        assert len(pids) == 2 and os.getpid() not in pids
        assert {pool.call(os.getpid) for _ in range(6)} == pids
        with pytest.raises(TimeoutError):
            pool.call(time.sleep, (30,), timeout_s=0.5)
        after = {pool.call(os.getpid) for _ in range(6)}
        assert len(after) == 2 and len(after & pids) == 1
        result, = pool.build([ms.builder.BuilderInput(unbuildable_module(), tv.host_target(1))], 30)
        assert result.artifact_path is None and "An exception occurred" in result.error_msg
        assert "not passed in as API arguments" in result.error_msg


def unbuildable_module():
    """A TIR function that reads a variable it is not given: its build fails."""
    import tvm
    from tvm import tirx

    free = tirx.Var("n", "int32")
    out = tirx.decl_buffer((4,), "float32", name="out")
    body = tirx.BufferStore(out, tirx.Cast("float32", free), [0])
    return tvm.IRModule({"main": tirx.PrimFunc([out], body).with_attr("global_symbol", "main")})
