"""LiteRT backend: the module converted with litert-torch to a .tflite file, run by LiteRT's interpreter with its
XNNPACK delegate. The converted file is cached like the other builds and checked before use.

int8 is litert-torch's own path: PT2E static quantization with its PT2EQuantizer (symmetric int8 per-channel
weights), with the same two corrections as ExecuTorch's XNNPACKQuantizer, of which it is a copy (convolution + ReLU6
quantized as one, min-max activation ranges) and the first convolution in float32 (pt2e.py), then converted: the
.tflite holds int8 operators, which the interpreter hands to XNNPACK. How many operators run on int8 inputs is read
back from the interpreter."""

from __future__ import annotations

import contextlib
import io
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cache import cached_path
from . import BackendUnavailable, LoadContext, cached_conversion, has_torch_module, require, torch_module

if TYPE_CHECKING:
    import torch

INSTALL_HINT = ("run `make`, which installs it beside TVM (the Makefile says why `pip install -e '.[litert]'` alone "
                "would downgrade typing-extensions below what TVM needs)")


COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def int8_compute_ops(ops: list[dict[str, Any]], tensors: list[dict[str, Any]]) -> int:
    """How many convolution / fully connected operators of the interpreter's node list take int8 activations."""
    dtype = {tensor["index"]: np.dtype(tensor["dtype"]) for tensor in tensors}
    return sum(1 for op in ops if op["op_name"] in COMPUTE_OPS and len(op["inputs"])
               and dtype.get(int(op["inputs"][0])) == np.dtype(np.int8))


def describe_delegation(ops: list[dict[str, Any]]) -> str:
    """`5 of 5 ops in 1 delegate kernel`, from the interpreter's node list after `allocate_tensors`.

    There, a delegate kernel is a node named DELEGATE (the interpreter does not say which delegate: with its
    default op resolver, the one it applies is XNNPACK) listed after the model's own ops, which all stay listed.
    The ops a kernel took are those between its inputs and outputs: found walking back from its outputs to
    the ops that produced them, until its inputs."""
    kernels = [op for op in ops if op["op_name"] == "DELEGATE"]
    own = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in own for t in op["outputs"]}
    inputs = {op["index"]: [int(t) for t in op["inputs"] if t != -1] for op in own}
    taken: set[int] = set()
    for kernel in kernels:
        boundary = {int(t) for t in kernel["inputs"]}
        pending = [int(t) for t in kernel["outputs"]]
        while pending:
            tensor = pending.pop()
            if tensor in boundary or tensor not in producer or producer[tensor] in taken:
                continue
            taken.add(producer[tensor])
            pending.extend(inputs[producer[tensor]])
    return f"{len(taken)} of {len(own)} ops in {len(kernels)} delegate kernel{'s' if len(kernels) != 1 else ''}"


class LiteRtXnnpack:
    name = "litert"
    precisions = ("fp32", "int8")

    def __init__(self) -> None:
        self._interpreter_class = require("ai_edge_litert.interpreter", "ai-edge-litert", INSTALL_HINT).Interpreter
        self._interpreter = None
        self._input = self._output = 0
        self._output_quantization: tuple[float, int] = (0.0, 0)

    def version(self) -> str:
        from importlib import metadata

        return metadata.version("ai-edge-litert")

    def load(self, ctx: LoadContext) -> None:
        from .pt2e import XNNPACK_STYLE_RECIPE, int8_versions

        has_torch_module(ctx, self.name)  # built only to convert: a cached file runs without torch
        versions = {"litert": self.version()}
        if ctx.precision == "int8":
            versions.update(int8_versions(ctx, XNNPACK_STYLE_RECIPE))
        path = cached_conversion(ctx, "litert", ".tflite", versions, lambda: self._convert(ctx))
        interpreter = self._interpreter_class(model_path=str(path), num_threads=ctx.threads)
        interpreter.allocate_tensors()
        self._input = interpreter.get_input_details()[0]["index"]
        output = interpreter.get_output_details()[0]
        self._output = output["index"]
        self._output_quantization = output.get("quantization", (0.0, 0))  # (0.0, 0): not quantized
        self._interpreter = interpreter
        ctx.info["artifact_path"] = str(path)
        # The interpreter has no getter for its thread count, so none is claimed here (the row's threads say
        # what it was asked for); what was delegated it does say, in its node list.
        ops = interpreter._get_ops_details()
        ctx.info["litert_delegated"] = describe_delegation(ops)
        if ctx.precision == "int8":
            integer = int8_compute_ops(ops, interpreter.get_tensor_details())
            if not integer:
                raise BackendUnavailable("asked LiteRT for int8, but the converted model has no convolution or fully "
                                         "connected operator on int8 inputs")
            compute = sum(1 for op in ops if op["op_name"] in COMPUTE_OPS)
            ctx.info["int8_compute_ops"] = f"{integer} of {compute} convolution/fully connected operators on int8"

    def _convert(self, ctx: LoadContext) -> bytes:
        import torch

        litert_torch = require("litert_torch", "litert-torch", INSTALL_HINT)
        tmp = cached_path("litert", f".convert-{os.getpid()}", ".tflite")
        try:
            module, options = torch_module(ctx, self.name).eval(), {}
            if ctx.precision == "int8":
                # The quantizer goes to the converter too: it then turns the quantize/dequantize pairs around each
                # operator into int8 operators (its "STATIC" QDQ conversion); without it they stay float32.
                from litert_torch.quantize.quant_config import QuantConfig

                module, quantizer = self._quantized(ctx, module)
                options["quant_config"] = QuantConfig(pt2e_quantizer=quantizer)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                edge = litert_torch.convert(module, (torch.zeros(ctx.model.input_shape),), **options)
                edge.export(str(tmp))
            return tmp.read_bytes()
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _quantized(ctx: LoadContext, module: torch.nn.Module) -> tuple[torch.nn.Module, Any]:
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

        from .pt2e import quantize_xnnpack_style

        # Unfolded: the converter reads the quantize/dequantize pairs of the weights too.
        return quantize_xnnpack_style(ctx, module, "litert-torch", PT2EQuantizer, get_symmetric_quantization_config,
                                      fold_quantize=False)

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return np.ascontiguousarray(batch, dtype=np.float32)

    def forward(self, inputs: Any) -> Any:
        self._interpreter.set_tensor(self._input, inputs)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        """Float32 logits; an int8 model's int8 output is dequantized with the scale and zero point it declares
        (outside the timed call, like every backend's conversion to numpy: 1000 values)."""
        scale, zero_point = self._output_quantization
        if scale:
            return ((np.asarray(outputs, dtype=np.float32) - zero_point) * scale).astype(np.float32)
        return np.asarray(outputs, dtype=np.float32).copy()


def create(name: str) -> LiteRtXnnpack:
    return LiteRtXnnpack()
