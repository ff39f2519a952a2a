"""ONNX Runtime backend: the CPU execution provider on the suite's ONNX export of the same model; for int8, on its
static QDQ quantization (cpubench/quantize.py), whose QDQ pairs ONNX Runtime fuses into integer kernels. How many
convolutions and matrix products run in int8 is read back from the optimised graph, never assumed."""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import BackendUnavailable, LoadContext, require

# Operators that compute in integers once ONNX Runtime has fused the QDQ pairs, and the float ones they replace.
INT8_OPS = ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QLinearAdd", "QLinearMul",
            "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat")
HEAVY_INT8_OPS = ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger")
HEAVY_FLOAT_OPS = ("Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul", "NchwcConv")


def int8_kernels(optimized: Path) -> dict[str, Any]:
    """What the optimised int8 graph runs: how many convolutions and matrix products are integer kernels. None of
    them is a model that was not quantized: that fails rather than being reported as int8."""
    import onnx

    ops = collections.Counter(node.op_type for node in onnx.load(str(optimized)).graph.node)
    heavy_int8 = sum(ops[op] for op in HEAVY_INT8_OPS)
    heavy_float = sum(ops[op] for op in HEAVY_FLOAT_OPS)
    if heavy_int8 == 0:
        raise BackendUnavailable(f"asked ONNX Runtime for int8, but its optimised graph has no integer convolution "
                                 f"or matrix product ({heavy_float} float ones)")
    return {"int8_compute_ops": f"{heavy_int8} of {heavy_int8 + heavy_float} convolutions/matrix products in int8",
            "int8_op_types": {op: ops[op] for op in INT8_OPS if ops[op]}}


class OnnxRuntimeCPU:
    name = "onnxruntime"
    precisions = ("fp32", "int8")
    precision_notes = {"bf16": "the CPU execution provider has no bfloat16 convolution kernels"}

    def __init__(self) -> None:
        self._ort = require("onnxruntime", "onnxruntime", "run `pip install -e .`")
        self._session = None
        self._input_name = ""

    def version(self) -> str:
        return self._ort.__version__

    def load(self, ctx: LoadContext) -> None:
        opts = self._ort.SessionOptions()
        opts.intra_op_num_threads = ctx.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        with tempfile.TemporaryDirectory(prefix="ort-optimized-") as scratch:
            if ctx.precision == "int8":  # keep the optimised graph to see which kernels it chose
                opts.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
            self._session = self._ort.InferenceSession(str(ctx.onnx_path), sess_options=opts,
                                                       providers=["CPUExecutionProvider"])
            if ctx.precision == "int8":
                ctx.info.update(int8_kernels(Path(opts.optimized_model_filepath)))
        self._input_name = self._session.get_inputs()[0].name
        ctx.info["ort_providers"] = self._session.get_providers()
        ctx.info["artifact_path"] = str(ctx.onnx_path)  # what it loads: the ONNX file

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def forward(self, inputs: Any) -> Any:
        return self._session.run(None, inputs)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.asarray(outputs[0], dtype=np.float32)


def create(name: str) -> OnnxRuntimeCPU:
    return OnnxRuntimeCPU()
