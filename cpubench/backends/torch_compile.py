"""torch.compile backend: Inductor on the same module, weights frozen into the graph, compiled before timing.

Compilation happens on the first call, inside `load` (the warm-up call): its time is the row's build time,
never part of the timing. Inductor's own caches live under the suite's cache folder; with frozen weights they
save little of the compile on a second run (measured: 8-10 s a model either way), so it stays build time.

int8 is PyTorch's static PT2E path (pt2e.py): torchao's X86InductorQuantizer calibrated on the calibration set,
then Inductor with freezing, which lowers the quantized patterns to oneDNN int8 kernels (without freezing they run as
dequantize -> float32 convolution). The first convolution stays float32 (see pt2e.first_convolution). How many int8
kernels Inductor emitted is read back from its generated code.
"""

from __future__ import annotations

import os
import re

import torch

from ..cache import cache_root
from . import LoadContext
from .pt2e import first_convolution, quantize
from .torch_eager import TorchEager


class TorchCompile(TorchEager):
    name = "torch-compile"
    precisions = ("fp32", "bf16", "int8")
    precision_notes: dict[str, str] = {}

    def load(self, ctx: LoadContext) -> None:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "inductor"))
        import torch._inductor.config as inductor_config

        super().load(ctx)
        # Freezing: weights become constants, so Inductor folds batch norm and pre-packs weights for oneDNN.
        inductor_config.freezing = True
        # The C++ wrapper calls the kernels from compiled code rather than from a generated Python function: about
        # 1-2 ms less per call on EfficientNet-Lite0's hundred kernels (10-20% on its int8, 4% on ResNet18 fp32,
        # measured interleaved in one process). It costs a C++ compile of the wrapper at build time.
        inductor_config.cpp_wrapper = True
        if ctx.precision == "int8":
            self._module = self._quantized(ctx)
        self._module = torch.compile(self._module, backend="inductor", dynamic=False)
        ctx.info["torch_compile"] = "inductor, freezing, static shapes, C++ wrapper"
        if ctx.precision == "int8":
            ctx.info.update(int8_kernels(self._module, ctx.model.input_shape))

    def _quantized(self, ctx: LoadContext) -> torch.nn.Module:
        """The module after PT2E static quantization with torchao's X86InductorQuantizer (pt2e.quantize)."""
        from . import require

        torchao = require("torchao", "torchao", "run `pip install -e '.[backends]'` (`make` installs it)")
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        stem = first_convolution(self._module)
        if stem is not None:
            quantizer.set_module_name_qconfig(stem, None)
        ctx.info.update({
            "quantizer": f"torchao {torchao.__version__} X86InductorQuantizer (PT2E, static, per-channel weights)",
            "quantization_float_layers": f"{stem} (the first convolution, on the raw image)" if stem else "none"})
        return quantize(ctx, self._module, quantizer)


# Calls in Inductor's generated code: oneDNN's int8 convolution and linear kernels, and the float ones, as the
# Python wrapper writes them (`torch.ops.onednn.qconv_pointwise(`) and as the C++ wrapper does
# (`aoti_torch_cpu__qconv_pointwise_tensor(`).
INT8_KERNEL_CALL = re.compile(r"(?:torch\.ops\.onednn\.|aoti_torch_cpu__)q(?:conv\w*|linear\w*)(?:\.\w+)?\(")
FLOAT_KERNEL_CALL = re.compile(r"(?:torch\.ops\.mkldnn\._(?:convolution|linear)_pointwise\w*"
                               r"|torch\.ops\.mkl\._mkl_linear|extern_kernels\.(?:convolution|mm|addmm)"
                               r"|aoti_torch_cpu_mkldnn__(?:convolution|linear)_pointwise\w*|aoti_torch_cpu__mkl_linear"
                               r"|aoti_torch_cpu_(?:convolution|mm_out|addmm_out))(?:\.\w+)?\(")


def int8_kernels(compiled: torch.nn.Module, input_shape: tuple[int, ...]) -> dict[str, object]:
    """Compile now (the first call) and count, in the code Inductor generated, the oneDNN int8 convolution and
    linear kernels against the float ones. None at all fails: that is not int8."""
    from torch._inductor.utils import run_and_get_code

    from . import BackendUnavailable

    with torch.inference_mode():
        _, codes = run_and_get_code(compiled, torch.zeros(input_shape))
    code = "\n".join(codes)
    int8, float_ = len(INT8_KERNEL_CALL.findall(code)), len(FLOAT_KERNEL_CALL.findall(code))
    if int8 == 0:
        raise BackendUnavailable(f"asked Inductor for int8, but its generated code calls no oneDNN int8 kernel "
                                 f"({float_} float convolution/linear calls)")
    return {"int8_compute_ops": f"{int8} of {int8 + float_} convolution/linear kernel calls in int8 (oneDNN)"}


def create(name: str) -> TorchCompile:
    return TorchCompile()
