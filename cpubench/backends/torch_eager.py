"""PyTorch eager backend: the model as written, in inference mode; bf16 through CPU autocast."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from . import LoadContext, torch_module


class TorchEager:
    name = "torch"
    precisions = ("fp32", "bf16")
    precision_notes = {"int8": "PyTorch's static int8 for x86 is PT2E quantization lowered by Inductor, i.e. the "
                               "torch-compile backend; eager mode has no maintained int8 convolution path"}

    def __init__(self) -> None:
        self._module: torch.nn.Module | None = None
        self._bf16 = False

    def version(self) -> str:
        return torch.__version__

    def load(self, ctx: LoadContext) -> None:
        self._module = torch_module(ctx, self.name).eval()
        self._configure(ctx)

    def _configure(self, ctx: LoadContext) -> None:
        """Threads, float32 kept float32, and bf16 as autocast; recorded in ctx.info."""
        torch.set_num_threads(ctx.threads)
        # fp32 means fp32: no TF32/bf16 shortcuts in matrix products (PyTorch's default, set so it cannot drift).
        torch.set_float32_matmul_precision("highest")
        self._bf16 = ctx.precision == "bf16"
        ctx.info.update({"torch_threads": torch.get_num_threads(),
                         "torch_fp32_matmul": torch.get_float32_matmul_precision(),
                         "torch_autocast": "cpu bfloat16" if self._bf16 else "off"})

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(batch))

    def forward(self, inputs: Any) -> Any:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self._bf16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            return self._module(inputs)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return outputs.detach().float().numpy().astype(np.float32)


def create(name: str) -> TorchEager:
    return TorchEager()
