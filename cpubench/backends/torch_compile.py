"""torch.compile backend: Inductor on the same module, weights frozen into the graph, compiled before timing.

Compilation happens on the first call, inside `load` (the warm-up call): its time is the row's build time,
never part of the timing. Inductor's own caches live under the suite's cache folder; with frozen weights they
save little of the compile on a second run (measured: 8-10 s a model either way), so it stays build time.
"""

from __future__ import annotations

import os

import torch

from ..cache import cache_root
from . import LoadContext
from .torch_eager import TorchEager


class TorchCompile(TorchEager):
    name = "torch-compile"
    precisions = ("fp32", "bf16")

    def load(self, ctx: LoadContext) -> None:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "inductor"))
        import torch._inductor.config as inductor_config

        super().load(ctx)
        # Freezing: weights become constants, so Inductor folds batch norm and pre-packs weights for oneDNN.
        inductor_config.freezing = True
        self._module = torch.compile(self._module, backend="inductor", dynamic=False)
        ctx.info["torch_compile"] = "inductor, freezing, static shapes"


def create(name: str) -> TorchCompile:
    return TorchCompile()
