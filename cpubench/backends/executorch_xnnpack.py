"""ExecuTorch backend: the module exported with torch.export, lowered to the XNNPACK delegate, run by the
ExecuTorch runtime. The lowered program (.pte) is cached like the other builds, checked before use."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch

from . import BackendUnavailable, LoadContext, cached_conversion, torch_module

INSTALL_HINT = "run `pip install -e '.[executorch]'` (`make` installs it when it can)"


class ExecuTorchXnnpack:
    name = "executorch"
    precisions = ("fp32",)  # XNNPACK's CPU kernels here are float32 (and int8 after quantization)

    def __init__(self) -> None:
        try:
            import executorch
            from executorch.runtime import Runtime
        except ImportError as exc:
            raise BackendUnavailable(f"executorch is not installed ({exc}); {INSTALL_HINT}") from None
        self._executorch = executorch
        self._runtime = Runtime
        self._method = None

    def version(self) -> str:
        from importlib import metadata

        return metadata.version("executorch")

    def load(self, ctx: LoadContext) -> None:
        from executorch.extension.pybindings import portable_lib

        torch_module(ctx, self.name)
        path = cached_conversion(ctx, "executorch", ".pte", {"executorch": self.version()}, lambda: self._lower(ctx))
        portable_lib._unsafe_reset_threadpool(ctx.threads)
        ctx.info["executorch_threads"] = int(portable_lib._threadpool_get_thread_count())
        if ctx.info["executorch_threads"] != ctx.threads:
            raise BackendUnavailable(f"ExecuTorch's thread pool runs {ctx.info['executorch_threads']} threads, "
                                     f"not the {ctx.threads} asked for")
        self._method = self._runtime.get().load_program(str(path)).load_method("forward")
        ctx.info["artifact_path"] = str(path)
        ctx.info["executorch_delegate"] = "XnnpackBackend"

    def _lower(self, ctx: LoadContext) -> bytes:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        example = (torch.zeros(ctx.model.input_shape),)
        with contextlib.redirect_stdout(io.StringIO()):
            exported = torch.export.export(ctx.model.module.eval(), example)
            program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
        return bytes(program.buffer)

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return [torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))]

    def forward(self, inputs: Any) -> Any:
        return self._method.execute(inputs)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return outputs[0].detach().float().numpy().astype(np.float32)


def create(name: str) -> ExecuTorchXnnpack:
    return ExecuTorchXnnpack()
