"""ONNX Runtime backend: the CPU execution provider on the suite's ONNX export of the same model."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import LoadContext, require


class OnnxRuntimeCPU:
    name = "onnxruntime"
    precisions = ("fp32",)  # the CPU execution provider has no bfloat16 convolution kernels

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
        self._session = self._ort.InferenceSession(str(ctx.onnx_path), sess_options=opts,
                                                   providers=["CPUExecutionProvider"])
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
