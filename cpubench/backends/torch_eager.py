"""PyTorch eager backend: the model as written, in inference mode."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import LoadContext


class TorchEager:
    name = "torch"

    def __init__(self) -> None:
        self._module: torch.nn.Module | None = None

    def version(self) -> str:
        return torch.__version__

    def load(self, ctx: LoadContext) -> None:
        torch.set_num_threads(ctx.threads)
        self._module = ctx.model.module.eval()
        ctx.info["torch_threads"] = torch.get_num_threads()

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(batch))

    def forward(self, inputs: Any) -> Any:
        with torch.inference_mode():
            return self._module(inputs)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return outputs.detach().numpy().astype(np.float32)


def create(name: str) -> TorchEager:
    return TorchEager()
