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
from . import BackendUnavailable, LoadContext, cached_conversion, torch_module

INSTALL_HINT = ("run `make`, which installs it beside TVM (the Makefile says why `pip install -e '.[litert]'` alone "
                "would downgrade typing-extensions below what TVM needs)")


class LiteRtXnnpack:
    name = "litert"
    precisions = ("fp32",)  # the converted model is float32; reduced precision needs LiteRT's quantizer

    def __init__(self) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise BackendUnavailable(f"ai-edge-litert is not installed ({exc}); {INSTALL_HINT}") from None
        self._interpreter_class = Interpreter
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
        ctx.info["litert_threads"] = ctx.threads
        ctx.info["litert_delegate"] = "XNNPACK (LiteRT's default CPU delegate)"

    def _convert(self, ctx: LoadContext) -> bytes:
        try:
            import litert_torch
        except ImportError as exc:
            raise BackendUnavailable(f"litert-torch is not installed ({exc}); {INSTALL_HINT}") from None
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
