"""The CPU's own float32 matrix-multiply rate, measured in the same interleaved rounds as the models, and each
variant's efficiency against it: model FLOPs / (median x that rate). A yardstick that travels between machines:
ONNX Runtime runs ResNet18 at about 100% of it on every CPU measured so far.

The GEMM runs in a worker of its own like any variant (the same load / prepare_inputs / forward interface), with
numpy's BLAS on the run's thread count; it is not a backend of a model, so it is not in the backend registry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NAME = "cpu-gemm"
SIZE = 1024  # square float32 matrices: 2 x 1024^3 = 2.15 GFLOP a call, a few ms on the CPUs seen so far
FLOPS_PER_CALL = 2 * SIZE**3


class GemmYardstick:
    name = NAME
    precisions = ("fp32",)

    def __init__(self) -> None:
        self._a = self._b = self._out = None

    def version(self) -> str:
        return f"numpy {np.__version__} matmul {SIZE}x{SIZE} float32"

    def load(self, ctx: Any) -> None:
        rng = np.random.default_rng(0)
        self._a = rng.standard_normal((SIZE, SIZE), dtype=np.float32)
        self._b = rng.standard_normal((SIZE, SIZE), dtype=np.float32)
        self._out = np.empty((SIZE, SIZE), dtype=np.float32)
        ctx.info.update({"gemm_size": SIZE, "gemm_flops": FLOPS_PER_CALL, "blas": blas_name()})

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return None

    def forward(self, inputs: Any) -> Any:
        return np.matmul(self._a, self._b, out=self._out)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.asarray(outputs[:1, :8], dtype=np.float32)


def blas_name() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # the layout of numpy's build information is not a stable interface
        return "numpy's BLAS"


def create(name: str) -> GemmYardstick:
    return GemmYardstick()


def model_flops(module: Any, input_shape: tuple[int, ...]) -> int | None:
    """Floating-point operations of one forward pass (2 per multiply-add), counted by PyTorch's FLOP counter on the
    torch module; None when there is no module (an ONNX file) or the counter fails."""
    if module is None:
        return None
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            module(torch.zeros(input_shape))
        return int(counter.get_total_flops())
    except Exception:  # a module the counter cannot trace: no efficiency column, said in the report
        return None


def efficiency(variant_rounds: dict[int, float], gemm_rounds: dict[int, float], flops: int) -> Any:
    """The variant's share of the CPU's GEMM rate, per rotation (its round against the GEMM's round of the same
    rotation), then the median with its interval: a Ratio, 1.0 meaning the model ran at the GEMM's FLOP rate."""
    from .results import Ratio
    from .stats import median_interval

    shares = [flops / FLOPS_PER_CALL * gemm_rounds[r] / seconds for r, seconds in sorted(variant_rounds.items())
              if r in gemm_rounds and seconds > 0]
    if not shares:
        return None
    return Ratio(*median_interval(shares), pairs=len(shares))


def rate_gflops(gemm_rounds: dict[int, float]) -> tuple[float, float, float]:
    """The GEMM's rate in GFLOP/s with its interval (the faster end of time is the higher rate)."""
    from .stats import median_interval

    median, low, high = median_interval(list(gemm_rounds.values()))
    return FLOPS_PER_CALL / median / 1e9, FLOPS_PER_CALL / high / 1e9, FLOPS_PER_CALL / low / 1e9
