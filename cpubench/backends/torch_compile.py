"""torch-compile backend: PyTorch's Inductor compiler on the same module, weights frozen into the graph, built
ahead of time and cached.

The model is exported (`torch.export`) and compiled by AOTInductor (`torch._inductor.aoti_compile_and_package`):
the same Inductor code generation as `torch.compile`, with freezing (weights become constants, batch norm folds,
oneDNN weights are pre-packed) and the C++ wrapper, which calls the kernels from compiled code rather than from a
generated Python function (10-20% faster on EfficientNet-Lite0's hundred kernels). The package is a file in the
suite's cache, keyed by model, versions, precision and this CPU's instruction set (the code is built for it), so a
second run loads it in well under a second instead of compiling for 10-40 s. Compiling is build time, never timed.

A model that `torch.export` cannot take falls back to `torch.compile` itself (the same settings, compiled on the
first call, inside `load`), and the row says so.

bf16 is CPU autocast, exported under autocast so the casts are compiled in. int8 is PyTorch's static PT2E path
(pt2e.py): torchao's X86InductorQuantizer calibrated on the calibration set, then Inductor with freezing, which
lowers the quantized patterns to oneDNN int8 kernels (without freezing they run as dequantize -> float32
convolution). The first convolution stays float32 (see pt2e.first_convolution). On a CPU without an 8-bit dot
product (no VNNI or AMX), activations take 7 bits (the config's `reduce_range`, which torchao prescribes for such
CPUs): oneDNN's uint8 x int8 kernels there saturate the sum of two products at int16 (cpubench/quantize.py). How
many int8 kernels Inductor emitted is read back from its generated code.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..cache import cache_root, content_key
from ..quantize import int8_dot_product
from . import BackendUnavailable, LoadContext, cached_conversion, has_torch_module, torch_module
from .pt2e import first_convolution, int8_versions, quantize
from .torch_eager import TorchEager

INDUCTOR_OPTIONS = {"freezing": True, "cpp_wrapper": True}
EXPORT_RECIPE = "torch.export non-strict; bf16 as autocast inside forward"
X86_INT8_RECIPE = "PT2E, torchao X86InductorQuantizer default config, first convolution float32"
REDUCED_RANGE = "7-bit activations (reduce_range: this CPU has no VNNI or AMX)"


class TorchCompile(TorchEager):
    name = "torch-compile"
    precisions = ("fp32", "bf16", "int8")
    precision_notes: dict[str, str] = {}

    def __init__(self) -> None:
        super().__init__()
        self._call: Callable[[torch.Tensor], Any] | None = None
        self._jit_autocast = False  # the torch.compile fallback casts at run time; a package has the casts built in

    def load(self, ctx: LoadContext) -> None:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root() / "inductor"))
        has_torch_module(ctx, self.name)  # the module itself is built only to compile: a cached package needs none
        self._configure(ctx)
        versions = {"inductor": INDUCTOR_OPTIONS, "export": EXPORT_RECIPE, "precision": ctx.precision,
                    "cpu": cpu_identity()}
        if ctx.precision == "int8":
            versions.update(int8_versions(ctx, X86_INT8_RECIPE + ("" if int8_dot_product() else ", " + REDUCED_RANGE)))
        try:
            path = cached_conversion(ctx, "torch-compile", ".pt2", versions, lambda: self._aot_compile(ctx))
        except ExportFailed as failed:
            self._jit_compile(ctx, failed.module, failed.reason)
            return
        self._call = torch._inductor.aoti_load_package(str(path))
        ctx.info["artifact_path"] = str(path)
        ctx.info["torch_compile"] = ("Inductor ahead of time (torch.export, AOTInductor): freezing, C++ wrapper, "
                                     "static shapes")
        if ctx.precision == "int8":
            ctx.info.update(count_int8_kernels(package_code(path)))
        if self._bf16:
            self._check_bf16(ctx)

    def forward(self, inputs: Any) -> Any:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self._jit_autocast else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            return self._call(inputs)

    def _check_bf16(self, ctx: LoadContext) -> None:
        """Read back that the compiled model computes in bfloat16: autocast leaves its output in bfloat16."""
        dtype = self.forward(torch.zeros(ctx.model.input_shape)).dtype
        if dtype != torch.bfloat16:
            raise BackendUnavailable(f"asked Inductor for bf16 (CPU autocast), but the compiled model returns {dtype}")

    def _module_to_compile(self, ctx: LoadContext) -> torch.nn.Module:
        module = torch_module(ctx, self.name).eval()
        return self._quantized(ctx, module) if ctx.precision == "int8" else module

    def _aot_compile(self, ctx: LoadContext) -> bytes:
        """The AOTInductor package's bytes; ExportFailed when torch.export cannot take the model."""
        module = self._module_to_compile(ctx)
        example = (torch.zeros(ctx.model.input_shape),)
        # bf16: autocast inside forward is exported and compiled in (an autocast around export is ignored)
        try:
            with torch.no_grad():
                program = torch.export.export(AutocastBf16(module) if self._bf16 else module, example, strict=False)
        except Exception as exc:  # noqa: BLE001 - any export failure: torch.compile takes what export cannot
            raise ExportFailed(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                               module) from exc
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():  # with gradients on, Inductor freezes nothing
            package = torch._inductor.aoti_compile_and_package(
                program, package_path=str(Path(tmp) / "model.pt2"),
                inductor_configs=dict(INDUCTOR_OPTIONS))  # a copy: it adds its own keys to the dict it is given
            return Path(package).read_bytes()

    def _jit_compile(self, ctx: LoadContext, module: torch.nn.Module, reason: str) -> None:
        """torch.compile with the same Inductor settings, compiled now by its first call."""
        import torch._inductor.config as inductor_config
        from torch._inductor.utils import run_and_get_code

        for option, value in INDUCTOR_OPTIONS.items():
            setattr(inductor_config, option, value)
        self._jit_autocast = self._bf16
        self._call = torch.compile(module, backend="inductor", dynamic=False)
        ctx.info["torch_compile"] = (f"torch.compile (torch.export could not take the model: {reason[:200]}): "
                                     "Inductor, freezing, C++ wrapper, static shapes")
        _, codes = run_and_get_code(self.forward, torch.zeros(ctx.model.input_shape))
        if ctx.precision == "int8":
            ctx.info.update(count_int8_kernels("\n".join(codes)))
        if self._bf16:
            self._check_bf16(ctx)

    def _quantized(self, ctx: LoadContext, module: torch.nn.Module) -> torch.nn.Module:
        """The module after PT2E static quantization with torchao's X86InductorQuantizer (pt2e.quantize)."""
        from . import require

        torchao = require("torchao", "torchao", "run `pip install -e '.[backends]'` (`make` installs it)")
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

        reduce_range = not int8_dot_product()
        quantizer = X86InductorQuantizer().set_global(
            get_default_x86_inductor_quantization_config(reduce_range=reduce_range))
        stem = first_convolution(module)
        if stem is not None:
            quantizer.set_module_name_qconfig(stem, None)
        ctx.info.update({
            "quantization_activations": REDUCED_RANGE if reduce_range else "uint8, full range",
            "quantizer": f"torchao {torchao.__version__} X86InductorQuantizer (PT2E, static, per-channel weights)",
            "quantization_float_layers": f"{stem} (the first convolution, on the raw image)" if stem else "none"})
        return quantize(ctx, module, quantizer)


class AutocastBf16(torch.nn.Module):
    """`module` under CPU bfloat16 autocast, as torch.export records it."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.module(x)


class ExportFailed(Exception):
    def __init__(self, reason: str, module: torch.nn.Module) -> None:
        super().__init__(reason)
        self.reason, self.module = reason, module


def cpu_identity() -> str:
    """What the compiled code depends on in this CPU: its model name and flags (Inductor builds for the vector
    instructions it finds, so a package built on an AVX-512 CPU may not run on an AVX2 one)."""
    from ..machine import cpu_flags, cpu_model_name

    return content_key(model=cpu_model_name(), flags=sorted(cpu_flags()))


def package_code(path: Path) -> str:
    """The C++ Inductor generated, as kept in an AOTInductor package."""
    with zipfile.ZipFile(path) as package:
        return "\n".join(package.read(name).decode(errors="replace") for name in package.namelist()
                         if name.endswith(".cpp"))


# Calls in Inductor's generated code: oneDNN's int8 convolution and linear kernels, and the float ones, as the
# Python wrapper writes them (`torch.ops.onednn.qconv_pointwise(`) and as the C++ wrapper does
# (`aoti_torch_cpu__qconv_pointwise_tensor(`).
INT8_KERNEL_CALL = re.compile(r"(?:torch\.ops\.onednn\.|aoti_torch_cpu__)q(?:conv\w*|linear\w*)(?:\.\w+)?\(")
FLOAT_KERNEL_CALL = re.compile(r"(?:torch\.ops\.mkldnn\._(?:convolution|linear)_pointwise\w*"
                               r"|torch\.ops\.mkl\._mkl_linear|extern_kernels\.(?:convolution|mm|addmm)"
                               r"|aoti_torch_cpu_mkldnn__(?:convolution|linear)_pointwise\w*|aoti_torch_cpu__mkl_linear"
                               r"|aoti_torch_cpu_(?:convolution|mm_out|addmm_out))(?:\.\w+)?\(")


def count_int8_kernels(code: str) -> dict[str, object]:
    """Count, in the code Inductor generated, the oneDNN int8 convolution and linear kernels against the float
    ones. None at all fails: that is not int8."""
    int8, float_ = len(INT8_KERNEL_CALL.findall(code)), len(FLOAT_KERNEL_CALL.findall(code))
    if int8 == 0:
        raise BackendUnavailable(f"asked Inductor for int8, but its generated code calls no oneDNN int8 kernel "
                                 f"({float_} float convolution/linear calls)")
    return {"int8_compute_ops": f"{int8} of {int8 + float_} convolution/linear kernel calls in int8 (oneDNN)"}


def create(name: str) -> TorchCompile:
    return TorchCompile()
