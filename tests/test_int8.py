"""int8: the photo sets, the cached quantized model, the integer kernels each backend must prove it runs, what
"agree" means, the gate's bound and the verdict's words, on tiny models."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch
from tiny import TINY_SHAPE, tiny_model

from cpubench import gate
from cpubench.agreement import INT8_NEAR_TIE, agreement_rate
from cpubench.backends import BackendUnavailable, LoadContext, create_backend
from cpubench.models import BuiltModel
from cpubench.onnx_export import export_onnx
from cpubench.quantize import (
    CALIBRATION_PHOTOS,
    CALIBRATION_VIEWS,
    EVALUATION_PHOTOS,
    EVALUATION_VIEWS,
    calibration_set,
    evaluation_set,
    quantize_onnx,
    weight_format,
)
from cpubench.report import verdict_line
from cpubench.results import BenchRow


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_calibration_and_evaluation_photos_are_real_disjoint_and_deterministic():
    assert len(CALIBRATION_PHOTOS) >= 4 and len(EVALUATION_PHOTOS) >= 4
    assert not {p.stem for p in CALIBRATION_PHOTOS} & {p.stem for p in EVALUATION_PHOTOS}
    assert not {digest(p) for p in CALIBRATION_PHOTOS} & {digest(p) for p in EVALUATION_PHOTOS}
    model = tiny_model()
    calibration, evaluation = calibration_set(model), evaluation_set(model)
    assert calibration.shape == (len(CALIBRATION_PHOTOS) * CALIBRATION_VIEWS, *TINY_SHAPE[1:])
    assert evaluation.shape == (len(EVALUATION_PHOTOS) * EVALUATION_VIEWS, *TINY_SHAPE[1:])
    assert calibration.dtype == evaluation.dtype == np.float32
    np.testing.assert_array_equal(evaluation, evaluation_set(model))  # deterministic
    views = evaluation[:EVALUATION_VIEWS].reshape(EVALUATION_VIEWS, -1)
    assert len({v.tobytes() for v in views}) == EVALUATION_VIEWS  # every crop and mirror is another image


def test_quantized_model_is_cached_checked_and_rebuilt(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path))
    model = tiny_model()
    calibration = calibration_set(model)
    first = quantize_onnx(model, tiny_onnx, calibration)
    assert not first.info["quantized_from_cache"] and first.info["quantize_seconds"] > 0
    assert first.info["quantization_format"] == "QDQ"
    assert first.info["quantization_weights"].startswith(weight_format())
    assert first.info["calibration_images"] == len(calibration)
    again = quantize_onnx(model, tiny_onnx, calibration)
    assert again.path == first.path and again.info["quantized_from_cache"]
    assert again.info["quantize_seconds"] == first.info["quantize_seconds"]  # recorded when it was made
    intact = first.path.read_bytes()
    first.path.write_bytes(intact[: len(intact) // 2])  # damaged between two runs: made again, never used
    rebuilt = quantize_onnx(model, tiny_onnx, calibration)
    assert not rebuilt.info["quantized_from_cache"] and rebuilt.path.read_bytes() == intact
    other = quantize_onnx(model, tiny_onnx, calibration[:4])  # other calibration images: another model
    assert other.path != first.path


def test_weights_follow_the_cpus_int8_dot_product(tiny_onnx, tmp_path, monkeypatch):
    """int8 weights (U8S8) where VNNI, AVX-VNNI or AMX multiplies them exactly; uint8 (U8U8) on an AVX2 CPU, whose
    uint8 x int8 kernels saturate; each a file of its own in the cache, and the row says which and why."""
    assert weight_format(frozenset({"avx2", "avx512f", "avx512_vnni"})) == "int8"
    assert weight_format(frozenset({"avx2", "avx_vnni"})) == "int8"
    assert weight_format(frozenset({"avx2", "amx_int8", "amx_tile"})) == "int8"
    assert weight_format(frozenset({"avx2", "fma", "avx512f"})) == "uint8"  # AVX-512 without VNNI (Skylake-SP)
    assert weight_format(frozenset({"avx2", "fma"})) == "uint8"
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path))
    import onnx

    model = tiny_model()
    calibration = calibration_set(model)
    files = {w: quantize_onnx(model, tiny_onnx, calibration, weights=w) for w in ("int8", "uint8")}
    assert files["int8"].path != files["uint8"].path
    assert "U8S8" in files["int8"].info["quantization_weights"]
    assert "U8U8" in files["uint8"].info["quantization_weights"] and "saturate" in files["uint8"].info[
        "quantization_weights"]
    for weights, quantized in files.items():
        graph = onnx.load(str(quantized.path)).graph
        stored = {init.name: init.data_type for init in graph.initializer}
        conv = next(n for n in graph.node if n.op_type == "Conv")
        dequantize = next(n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] == conv.input[1])
        expected = onnx.TensorProto.INT8 if weights == "int8" else onnx.TensorProto.UINT8
        assert stored[dequantize.input[0]] == expected
    with pytest.raises(ValueError, match="int8 or uint8"):
        quantize_onnx(model, tiny_onnx, calibration, weights="int4")


class TwoConvs(torch.nn.Module):
    """The tiny model with a second convolution: the first stays float32 in PT2E int8 (on the raw image); the
    second is followed by ReLU6, which XNNPACK-style quantizers must take with it (pt2e.conv_clamp_quantizer)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.nn.functional.relu6(self.conv(torch.relu(self.stem(x)))).mean(dim=(2, 3)))


def two_convs() -> BuiltModel:
    torch.manual_seed(0)
    return BuiltModel("twoconvs", TwoConvs().eval(), "seeded", "twoconvs-seed0", TINY_SHAPE)


def run_int8(name, tiny_onnx, tmp_path, monkeypatch, onnx_path=None):
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path))
    model = two_convs()
    calibration = calibration_set(model)
    path = onnx_path or quantize_onnx(model, export_onnx(model), calibration).path
    ctx = LoadContext(model=model, onnx_path=path, threads=1, tuning_logs=tmp_path, precision="int8",
                      calibration=calibration)
    try:
        backend = create_backend(name, "int8")
    except BackendUnavailable as exc:  # its package is missing: the message names the fix
        pytest.skip(str(exc))
    backend.load(ctx)
    x = evaluation_set(model)[:1]
    got = backend.to_numpy(backend.forward(backend.prepare_inputs(x)))
    with torch.inference_mode():
        expected = model.module(torch.from_numpy(x)).numpy()
    return got, expected, ctx.info


@pytest.mark.parametrize("name", ["onnxruntime", "openvino", "torch-compile", "executorch", "litert"])
def test_int8_runs_integer_kernels_and_stays_close(name, tiny_onnx, tmp_path, monkeypatch):
    got, expected, info = run_int8(name, tiny_onnx, tmp_path, monkeypatch)
    kernels = re.match(r"(\d+) (of \d+ convolution|quantize/dequantize operators delegated)", info["int8_compute_ops"])
    if name not in ("onnxruntime", "openvino"):  # they run the QDQ file, which quantizes every layer
        assert info["quantization_float_layers"].startswith("stem")
    assert kernels and int(kernels[1]) >= 1, info["int8_compute_ops"]  # read back from the runtime
    assert np.abs(got - expected).max() <= 0.3 * np.abs(expected).max()


@pytest.mark.parametrize("quantizer", ["executorch.backends.xnnpack.quantizer.xnnpack_quantizer:XNNPACKQuantizer",
                                       "litert_torch.quantize.pt2e_quantizer:PT2EQuantizer"])
def test_conv_relu6_is_quantized_as_one_and_the_stem_stays_float(quantizer):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from cpubench.backends.pt2e import conv_clamp_quantizer, inside, min_max_activations

    module_name, _, class_name = quantizer.partition(":")
    base = getattr(pytest.importorskip(module_name), class_name)
    config = min_max_activations(pytest.importorskip(module_name).get_symmetric_quantization_config(
        is_per_channel=True))
    model = two_convs().module
    exported = torch.export.export(model, (torch.zeros(TINY_SHAPE),), strict=True).module()
    prepared = prepare_pt2e(exported, conv_clamp_quantizer(base, float_module="stem").set_global(config))
    convs = {name: next(n for n in prepared.graph.nodes if "conv2d" in str(n.target) and inside(name, n))
             for name in ("stem", "conv")}
    (user,) = convs["conv"].users  # the convolution feeds ReLU6 itself, not an observer: quantized after the clamp
    assert "relu6" in str(user.target)
    (observer,) = user.users
    assert type(prepared.get_submodule(observer.target)).__name__ == "MinMaxObserver"

    def observers(node):
        return [type(prepared.get_submodule(arg.target)).__name__ for arg in node.args
                if isinstance(arg, torch.fx.Node) and arg.op == "call_module"]
    assert observers(convs["stem"]) == []  # float32: nothing observed
    assert observers(convs["conv"]) == ["MinMaxObserver", "PerChannelMinMaxObserver"]  # its input, its weights


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_a_float_model_is_not_reported_as_int8(name, tiny_onnx, tmp_path, monkeypatch):
    with pytest.raises(BackendUnavailable, match="int8"):
        run_int8(name, tiny_onnx, tmp_path, monkeypatch, onnx_path=tiny_onnx)


def test_backends_without_int8_say_why():
    with pytest.raises(BackendUnavailable, match="QuantizeLinear/DequantizeLinear back into float32"):
        create_backend("tvm", "int8")
    with pytest.raises(BackendUnavailable, match="torch-compile"):
        create_backend("torch", "int8")


def test_agreement_rate_sets_near_ties_apart():
    reference = np.array([[10.0, 1.0, 0.0],     # clear: class 0
                          [10.0, 9.9, 0.0],     # near-tie (margin 1% of the largest logit)
                          [0.0, 5.0, 1.0],      # clear: class 1
                          [3.0, 0.0, 1.0]])     # clear: class 0
    candidate = np.array([[9.0, 2.0, 0.0], [9.0, 10.0, 0.0], [0.0, 5.0, 1.0], [0.0, 3.0, 1.0]])
    rate = agreement_rate(reference, candidate, "int8")
    assert (rate["images"], rate["judged"], rate["near_ties"], rate["agree"]) == (4, 3, 1, 2)
    assert rate["rate"] == pytest.approx(2 / 3) and rate["agree_incl_near_ties"] == 2
    assert INT8_NEAR_TIE * 10 > 0.1  # the second row's margin (0.1) is under the near-tie margin
    assert agreement_rate(reference[1:2], candidate[1:2], "int8")["rate"] is None  # nothing judged, not 100%
    with pytest.raises(ValueError):
        agreement_rate(reference, candidate[:, :2], "int8")


def test_int8_fails_on_too_few_agreements_for_97_percent_not_on_one_miss():
    """An exact one-sided binomial test against INT8_MIN_AGREEMENT: two misses in 36 (a variant that truly agrees
    on 98% misses that many one time in six) pass; ONNX Runtime's saturated U8S8 on an AVX2 CPU (29/36) fails."""
    from cpubench.agreement import INT8_SIGNIFICANCE, agreement_p_value, binomial_at_most

    def p(agree, judged):
        return agreement_p_value({"agree": agree, "judged": judged})

    assert binomial_at_most(2, 2, 0.5) == pytest.approx(1.0) and binomial_at_most(0, 2, 0.5) == pytest.approx(0.25)
    assert p(36, 36) == pytest.approx(1.0)
    assert p(34, 36) > INT8_SIGNIFICANCE  # ExecuTorch's XNNPACK on a Zen 3: two images with 7.5-8% margins
    assert p(33, 36) > INT8_SIGNIFICANCE > p(32, 36)  # four misses fail
    assert p(29, 36) < 1e-3 and p(26, 36) < 1e-3  # U8S8 saturating in ONNX Runtime and OpenVINO
    assert p(28, 32) < INT8_SIGNIFICANCE < p(29, 32)
    assert p(0, 0) is None


def test_gate_holds_int8_to_its_float32_unless_stored_for_this_cpu():
    def bands(data, key, variants, dot_product=True):
        return gate.expectations_for({"format": gate.FORMAT, "machines": data}, key, "resnet18", variants, "none",
                                     "avx512", None, int8_dot_product=dot_product).ratios

    new = bands({}, "new-2t-b1", ("onnxruntime-int8", "openvino-int8", "openvino"))
    assert new["onnxruntime-int8"].high == pytest.approx(gate.INT8_BOUND)  # faster than its own fp32
    assert new["onnxruntime-int8"].origin == "faster than onnxruntime fp32"
    # uint8 weights (U8U8) need not beat float32: only a collapse is caught
    avx2 = bands({}, "new-2t-b1", ("onnxruntime-int8",), dot_product=False)["onnxruntime-int8"]
    assert avx2.high == pytest.approx(gate.INT8_BOUND_WITHOUT_DOT_PRODUCT) and "no VNNI" in avx2.origin
    assert new["openvino-int8"] == new["openvino"]  # no slower than OpenVINO's fp32 may be

    def runs(**variants):
        return {"models": {"resnet18": {"ratios": {v.replace("_", "-"): {"runs": r} for v, r in variants.items()}}}}

    stored = {"mine-2t-b1": runs(openvino_int8=[0.2]), "other-2t-b1": runs(onnxruntime_int8=[0.4], openvino=[1.0])}
    own = bands(stored, "mine-2t-b1", ("openvino-int8", "onnxruntime-int8"))
    assert own["openvino-int8"] == gate.Band(0.2, gate.MAX_MARGIN, "own", 1)  # this machine's own runs
    assert own["onnxruntime-int8"].high == pytest.approx(gate.INT8_BOUND)  # another CPU's int8 does not carry over
    elsewhere = bands(stored, "new-2t-b1", ("openvino-int8",))
    assert elsewhere["openvino-int8"].expected == 1.0  # OpenVINO's fp32 band from the other CPU, not mine's int8
    assert elsewhere["openvino-int8"].origin == "openvino's fp32 band (other CPUs: other-2t-b1)"
    # The same CPU at another thread count has the same integer hardware: its int8 runs carry over.
    assert bands(stored, "mine-1t-b1", ("openvino-int8",))["openvino-int8"].expected == 0.2


def row(variant: str, precision: str, ms: float, agreement: dict | None = None) -> BenchRow:
    context = {"precision": precision, **({"int8_agreement": agreement} if agreement else {})}
    return BenchRow("m", variant, 1, {"median": ms / 1e3, "rounds": 10}, context, {r: ms / 1e3 for r in range(10)})


def test_report_names_each_int8_format_and_the_cpu_feature_that_chose_it():
    from cpubench.report import int8_line

    weights = "uint8 per channel (U8U8: uint8 x int8 kernels without VNNI saturate)"
    onnx_file = {"quantization_weights": weights, "quantization_activations": "uint8 (asymmetric)",
                 "cpu_int8_dot_product": "none (no VNNI or AMX)"}
    rows = [row("onnxruntime", "fp32", 10.0), row("onnxruntime-int8", "int8", 5.0), row("openvino-int8", "int8", 4.0),
            row("torch-compile-int8", "int8", 6.0), row("executorch-int8", "int8", 7.0)]
    for r in rows[1:3]:
        r.context.update(onnx_file)
    rows[3].context["quantization_activations"] = "7-bit activations (reduce_range: this CPU has no VNNI or AMX)"
    line = int8_line(rows)
    assert line.startswith("- int8 formats (this CPU's 8-bit dot product: none (no VNNI or AMX)): ")
    assert f"onnxruntime-int8, openvino-int8: weights {weights}; activations uint8 (asymmetric)" in line
    assert "torch-compile-int8: activations 7-bit activations (reduce_range" in line
    assert "executorch-int8" not in line  # its format does not depend on the CPU
    assert int8_line(rows[:1]) is None


def test_verdict_names_the_fastest_per_precision_and_what_int8_gives_up():
    agreement = {"agree": 35, "judged": 36, "near_ties": 12, "rate": 35 / 36, "images": 48}
    rows = [row("onnxruntime", "fp32", 10.0), row("openvino-bf16", "bf16", 3.0),
            row("openvino-int8", "int8", 1.5, agreement), row("onnxruntime-int8", "int8", 4.0, agreement)]
    line = verdict_line(rows, "m")
    assert "fastest is openvino-int8 in int8" in line
    assert "same top-1 as fp32 on 35/36 evaluation images" in line
    assert "Fastest per precision: int8 openvino-int8 0.15× [0.15, 0.15]" in line
    assert "bf16 openvino-bf16 0.30× [0.30, 0.30]" in line and "fp32 onnxruntime 1.00× [1.00, 1.00]" in line


@pytest.mark.parametrize("code, int8, float_", [
    # Inductor's Python wrapper
    ("buf1 = torch.ops.onednn.qconv_pointwise.tensor(buf0, ...)\n"
     "buf2 = torch.ops.onednn.qconv2d_pointwise.binary_tensor(buf1, ...)\n"
     "buf3 = torch.ops.mkldnn._convolution_pointwise.default(arg0, ...)\n"
     "buf4 = torch.ops.onednn.qlinear_pointwise.tensor(buf2, ...)", 3, 1),
    # its C++ wrapper
    ("AOTI_TORCH_ERROR_CODE_CHECK(aoti_torch_cpu__qconv_pointwise_tensor(buf0, ...));\n"
     "AOTI_TORCH_ERROR_CODE_CHECK(aoti_torch_cpu__qconv2d_pointwise_binary_tensor(buf1, ...));\n"
     "AOTI_TORCH_ERROR_CODE_CHECK(aoti_torch_cpu_mkldnn__convolution_pointwise(arg0, ...));\n"
     "AOTI_TORCH_ERROR_CODE_CHECK(aoti_torch_cpu_mkldnn__convolution_pointwise_binary_(buf2, ...));\n"
     "AOTI_TORCH_ERROR_CODE_CHECK(aoti_torch_cpu__qlinear_pointwise_tensor(buf3, ...));", 3, 2),
])
def test_int8_kernel_calls_are_counted_in_either_inductor_wrapper(code, int8, float_):
    from cpubench.backends.torch_compile import FLOAT_KERNEL_CALL, INT8_KERNEL_CALL

    assert (len(INT8_KERNEL_CALL.findall(code)), len(FLOAT_KERNEL_CALL.findall(code))) == (int8, float_)


@pytest.mark.parametrize("name", ["torch-compile", "executorch", "litert"])
def test_a_cached_int8_model_still_says_how_it_was_quantized(name, tiny_onnx, tmp_path, monkeypatch):
    _, _, first = run_int8(name, tiny_onnx, tmp_path, monkeypatch)
    _, _, cached = run_int8(name, tiny_onnx, tmp_path, monkeypatch)
    assert (first["conversion"], cached["conversion"]) == ("converted in this run", "from the cache")
    for key in ("quantizer", "quantization_float_layers", "calibration_images", "int8_compute_ops"):
        assert cached[key] == first[key], key
