"""The backends beyond the blog post's four, on the tiny model: right answers, the precision they claim, and a
skip with the fix when their package is missing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY_SHAPE, tiny_model

from cpubench import precision as prec
from cpubench.backends import BackendUnavailable, LoadContext, create_backend


def run(backend_name: str, onnx_path, precision: str = "fp32"):
    model = tiny_model()
    ctx = LoadContext(model=model, onnx_path=onnx_path, threads=1, tuning_logs=onnx_path.parent,
                      precision=precision)
    try:
        backend = create_backend(backend_name)
    except BackendUnavailable as exc:  # its package is missing: the message names the fix
        pytest.skip(str(exc))
    backend.load(ctx)
    x = np.random.default_rng(0).standard_normal(TINY_SHAPE).astype("float32")
    got = backend.to_numpy(backend.forward(backend.prepare_inputs(x)))
    with torch.inference_mode():
        expected = model.module(torch.from_numpy(x)).numpy()
    return got, expected, ctx.info


@pytest.mark.parametrize("name", ["openvino", "torch-compile", "executorch", "litert"])
def test_fp32_matches_torch(name, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path))
    got, expected, info = run(name, tiny_onnx)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    if name == "openvino":
        assert info["openvino_inference_precision"] == "f32"  # asked for and confirmed, on AMX CPUs too
    if name == "executorch":
        assert info["executorch_threads"] == 1  # read back from its thread pool
        delegated = re.fullmatch(r"XnnpackBackend: (\d+) of (\d+) ops( \(not delegated: .+\))?",
                                 info["executorch_delegated"])
        assert delegated, info["executorch_delegated"]
        assert 0 < int(delegated[1]) <= int(delegated[2])
    if name == "litert":
        delegated = re.fullmatch(r"(\d+) of (\d+) ops in (\d+) delegate kernels?", info["litert_delegated"])
        assert delegated, info["litert_delegated"]
        assert 0 < int(delegated[1]) <= int(delegated[2]) and int(delegated[3]) >= 1
        assert "litert_threads" not in info  # the interpreter cannot say: not claimed


def test_executorch_delegation_is_kept_beside_the_cached_program(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path))
    _, _, first = run("executorch", tiny_onnx)
    summary = Path(first["artifact_path"]).with_suffix(".json")
    assert summary.is_file()
    from cpubench.backends import executorch_xnnpack

    with monkeypatch.context() as patched:  # from the cache: the program and its summary, nothing lowered
        patched.setattr(executorch_xnnpack.ExecuTorchXnnpack, "_lower", lambda self, ctx: pytest.fail("lowered"))
        _, _, cached = run("executorch", tiny_onnx)
    assert cached["executorch_delegated"] == first["executorch_delegated"]
    summary.write_text("{}")  # damaged: discarded, and the program lowered again to count
    _, _, again = run("executorch", tiny_onnx)
    assert again["executorch_delegated"] == first["executorch_delegated"]


def test_torch_compile_package_is_cached_per_cpu_and_rebuilt_when_damaged(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path))
    from cpubench.backends import torch_compile

    got, expected, first = run("torch-compile", tiny_onnx)
    package = Path(first["artifact_path"])
    assert package.suffix == ".pt2" and "AOTInductor" in first["torch_compile"]
    # compiling leaves the options (part of the cache key) as they were, or the next load would miss the cache
    assert torch_compile.INDUCTOR_OPTIONS == {"freezing": True, "cpp_wrapper": True}
    with monkeypatch.context() as patched:  # from the cache: nothing compiled
        patched.setattr(torch_compile.TorchCompile, "_aot_compile", lambda *a: pytest.fail("compiled again"))
        cached_got, _, cached = run("torch-compile", tiny_onnx)
    assert cached["conversion"] == "from the cache" and cached["artifact_path"] == str(package)
    np.testing.assert_array_equal(cached_got, got)
    with monkeypatch.context() as patched:  # another CPU: its own package, never this one's code
        patched.setattr(torch_compile, "cpu_identity", lambda: "another-cpu")
        _, _, other = run("torch-compile", tiny_onnx)
    assert other["artifact_path"] != str(package) and other["conversion"] == "converted in this run"
    package.write_bytes(package.read_bytes()[:100])  # damaged: compiled again, never loaded
    again, _, rebuilt = run("torch-compile", tiny_onnx)
    assert rebuilt["conversion"] == "converted in this run"
    np.testing.assert_allclose(again, expected, rtol=1e-4, atol=1e-4)


def test_torch_compile_falls_back_to_jit_when_export_fails(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path))

    def refuse(*args, **kwargs):
        raise RuntimeError("data-dependent control flow\nmore detail")

    monkeypatch.setattr(torch.export, "export", refuse)
    got, expected, info = run("torch-compile", tiny_onnx)
    assert info["torch_compile"].startswith("torch.compile (torch.export could not take the model: RuntimeError: "
                                            "data-dependent control flow)")
    assert "artifact_path" not in info
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


# What each backend reads back (or sets) to say it runs bfloat16.
BF16_FACT = {"openvino": ("openvino_inference_precision", "bf16"), "torch": ("torch_autocast", "cpu bfloat16"),
             "torch-compile": ("torch_autocast", "cpu bfloat16")}


@pytest.mark.skipif(prec.cpu_lacks("bf16") is not None, reason=str(prec.cpu_lacks("bf16")))
@pytest.mark.parametrize("name", list(BF16_FACT))
def test_bf16_is_bf16_and_close(name, tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path))
    got, expected, info = run(name, tiny_onnx, "bf16")
    assert np.abs(got - expected).max() <= 5e-2 * np.abs(expected).max()
    key, value = BF16_FACT[name]
    assert info[key] == value


def test_missing_package_is_a_skip_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(BackendUnavailable, match=r"openvino is not installed .*pip install -e '\.\[backends\]'"):
        create_backend("openvino")


def test_bf16_needs_the_cpu_flag(monkeypatch):
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert "no native bfloat16" in (prec.cpu_lacks("bf16") or "")
    assert prec.cpu_lacks("fp32") is None
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    import platform

    if platform.machine() == "x86_64":
        assert prec.cpu_lacks("bf16") is None


def test_variant_keys_round_trip():
    assert prec.variant_keys(["torch", "openvino"], ["fp32", "bf16"]) == (
        "torch", "torch-bf16", "openvino", "openvino-bf16")
    assert prec.Variant.parse("torch-compile-bf16") == prec.Variant("torch-compile", "bf16")
    assert prec.Variant.parse("tvm-tuned") == prec.Variant("tvm-tuned", "fp32")


def test_executorch_runs_programs_without_importing_its_compiler():
    """A worker that runs a cached program loads ExecuTorch's runtime without its compiler (3.5 s of cold start);
    a lowering later in the same process still gets the real compiler."""
    pytest.importorskip("executorch.runtime")
    import subprocess

    script = ("import sys\nfrom cpubench.backends.executorch_xnnpack import runtime_module\n"
              "runtime = runtime_module()\nassert runtime.Runtime.get() is not None\n"
              "assert 'executorch.exir' not in sys.modules and 'executorch.exir.program' not in sys.modules\n"
              "from executorch.exir import to_edge_transform_and_lower\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_a_precision_a_backend_never_has_is_refused_before_any_runtime_is_imported():
    """plan.variant refuses tvm-int8, onnxruntime-bf16, ... from the backend's declared precisions, so no worker is
    started to say so; the message is the one the backend itself gives, and no runtime is imported to give it."""
    script = """
import sys
from cpubench.backends import BACKENDS, BackendUnavailable, check_declared_precision, create_backend
RUNTIMES = ("tvm", "onnxruntime", "openvino", "executorch", "ai_edge_litert")
said = {}
for name in BACKENDS:
    for precision in ("fp32", "bf16", "int8"):
        try:
            check_declared_precision(name, precision)
        except BackendUnavailable as exc:
            said[(name, precision)] = str(exc)
assert not [m for m in RUNTIMES if m in sys.modules], [m for m in RUNTIMES if m in sys.modules]
assert ("tvm", "int8") in said and ("onnxruntime", "bf16") in said and ("torch-compile", "int8") not in said
for name in BACKENDS:
    for precision in ("fp32", "bf16", "int8"):
        try:
            create_backend(name, precision)
            assert (name, precision) not in said, (name, precision)
        except BackendUnavailable as exc:
            assert said.get((name, precision)) == str(exc), (name, precision, str(exc))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
