"""OpenVINO backend: the CPU plugin on the suite's ONNX export, latency hint, explicit inference precision.

OpenVINO picks bfloat16 by itself on CPUs with AMX or AVX512-BF16 unless told otherwise, so the precision is
always set (`INFERENCE_PRECISION_HINT`) and read back from the compiled model: a row says fp32 only if the
runtime confirms it. int8 runs the same QDQ model as ONNX Runtime (cpubench/quantize.py), which OpenVINO turns into
its own int8 kernels; the hint stays f32 for the layers left in float, and how many convolutions and matrix
products execute in 8-bit is read back from the compiled model's runtime graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import BackendUnavailable, LoadContext, require

# The suite's name -> the inference precision asked of OpenVINO (int8: the quantized layers are int8 by the model,
# the rest stays f32, never a silent bf16).
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
HEAVY_LAYERS = ("Convolution", "FullyConnected", "MatMul", "GroupConvolution")


def int8_layers(compiled: Any) -> dict[str, Any]:
    """How many of the compiled model's convolutions and matrix products execute in 8-bit (runtimePrecision)."""
    from . import BackendUnavailable

    heavy, int8 = 0, 0
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if rt["layerType"].astype(str) in HEAVY_LAYERS:
            heavy += 1
            int8 += rt["runtimePrecision"].astype(str) in ("i8", "u8")
    if int8 == 0:
        raise BackendUnavailable(f"asked OpenVINO for int8, but none of its {heavy} convolutions/matrix products "
                                 "executes in 8-bit")
    return {"int8_compute_ops": f"{int8} of {heavy} convolutions/matrix products in int8"}


class OpenVinoCPU:
    name = "openvino"
    precisions = ("fp32", "bf16", "int8")

    def __init__(self) -> None:
        self._ov = require("openvino", "openvino", "run `pip install -e '.[backends]'` (`make` installs it)")
        self._request = None

    def version(self) -> str:
        return self._ov.__version__.split("-")[0]

    def load(self, ctx: LoadContext) -> None:
        import openvino.properties as props
        import openvino.properties.hint as hints

        core = self._ov.Core()
        wanted = OV_PRECISION[ctx.precision]
        config = {
            props.inference_num_threads: ctx.threads,
            hints.performance_mode: hints.PerformanceMode.LATENCY,
            hints.inference_precision: getattr(self._ov.Type, wanted),
        }
        compiled = core.compile_model(core.read_model(str(ctx.onnx_path)), "CPU", config)
        actual = compiled.get_property(hints.inference_precision).get_type_name()
        if actual != wanted:
            raise BackendUnavailable(f"asked OpenVINO for {wanted}, its compiled model reports {actual}")
        if ctx.precision == "int8":
            ctx.info.update(int8_layers(compiled))
        self._request = compiled.create_infer_request()
        ctx.info["artifact_path"] = str(ctx.onnx_path)  # what it loads: the ONNX file
        ctx.info.update({"openvino_inference_precision": actual,
                         "openvino_threads": int(compiled.get_property(props.inference_num_threads))})

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return np.ascontiguousarray(batch, dtype=np.float32)

    def forward(self, inputs: Any) -> Any:
        return self._request.infer(inputs, share_inputs=True)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.asarray(outputs[0], dtype=np.float32).copy()


def create(name: str) -> OpenVinoCPU:
    return OpenVinoCPU()
