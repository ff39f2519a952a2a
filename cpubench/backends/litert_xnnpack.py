"""LiteRT backend: the module converted with litert-torch to a .tflite file, run by LiteRT's interpreter with its
XNNPACK delegate. The converted file is cached like the other builds and checked before use."""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any

import numpy as np
import torch

from ..cache import cached_path
from . import LoadContext, cached_conversion, require, torch_module

INSTALL_HINT = ("run `make`, which installs it beside TVM (the Makefile says why `pip install -e '.[litert]'` alone "
                "would downgrade typing-extensions below what TVM needs)")


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
    precisions = ("fp32",)  # the converted model is float32
    precision_notes = {"int8": "LiteRT's int8 needs litert-torch's PT2E quantizer before conversion, not wired into "
                               "this suite yet: onnxruntime-int8, openvino-int8, torch-compile-int8 and "
                               "executorch-int8 run it"}

    def __init__(self) -> None:
        self._interpreter_class = require("ai_edge_litert.interpreter", "ai-edge-litert", INSTALL_HINT).Interpreter
        self._interpreter = None
        self._input = self._output = 0

    def version(self) -> str:
        from importlib import metadata

        return metadata.version("ai-edge-litert")

    def load(self, ctx: LoadContext) -> None:
        torch_module(ctx, self.name)
        path = cached_conversion(ctx, "litert", ".tflite", {"litert": self.version()}, lambda: self._convert(ctx))
        interpreter = self._interpreter_class(model_path=str(path), num_threads=ctx.threads)
        interpreter.allocate_tensors()
        self._input = interpreter.get_input_details()[0]["index"]
        self._output = interpreter.get_output_details()[0]["index"]
        self._interpreter = interpreter
        ctx.info["artifact_path"] = str(path)
        # The interpreter has no getter for its thread count, so none is claimed here (the row's threads say
        # what it was asked for); what was delegated it does say, in its node list.
        ctx.info["litert_delegated"] = describe_delegation(interpreter._get_ops_details())

    def _convert(self, ctx: LoadContext) -> bytes:
        litert_torch = require("litert_torch", "litert-torch", INSTALL_HINT)
        tmp = cached_path("litert", f".convert-{os.getpid()}", ".tflite")
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                edge = litert_torch.convert(ctx.model.module.eval(), (torch.zeros(ctx.model.input_shape),))
                edge.export(str(tmp))
            return tmp.read_bytes()
        finally:
            tmp.unlink(missing_ok=True)

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return np.ascontiguousarray(batch, dtype=np.float32)

    def forward(self, inputs: Any) -> Any:
        self._interpreter.set_tensor(self._input, inputs)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float32).copy()


def create(name: str) -> LiteRtXnnpack:
    return LiteRtXnnpack()
