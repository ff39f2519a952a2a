"""ExecuTorch backend: the module exported with torch.export, lowered to the XNNPACK delegate, run by the
ExecuTorch runtime. The lowered program (.pte) is cached like the other builds, checked before use, with what
the delegate took of it (counted when it was lowered) beside it.

int8 is ExecuTorch's own XNNPACK path: PT2E static quantization with its XNNPACKQuantizer (symmetric int8,
per-channel weights), taught to quantize convolution + ReLU6 as one operator, with min-max activation ranges,
calibrated on the calibration set, the first convolution kept in float32 as in torch-compile's int8 (all in
pt2e.py), then lowered to XNNPACK, whose int8 kernels take the quantized patterns. How many quantize/dequantize
operators the delegate took is counted when it is lowered."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache import discard_entry, json_entry, write_entry
from . import BackendUnavailable, LoadContext, cached_conversion, has_torch_module, require, torch_module

INSTALL_HINT = "run `pip install -e '.[executorch]'` (`make` installs it when it can)"
DELEGATION_KEYS = ("backends", "delegated_ops", "ops", "subgraphs", "not_delegated")


def runtime_module() -> Any:
    """`executorch.runtime`, without ExecuTorch's compiler when possible. Its Python bindings import the compiler
    package (`executorch.exir`, 3.5 s of a 5 s import) for one warning class; a program that is only run needs none
    of it. So the import goes through an empty stand-in for `executorch.exir` (its submodules still load from their
    files), which is then removed: a later lowering imports the real one. Should a release need more of the
    compiler at import, the plain import runs instead."""
    import importlib.util
    import sys

    plain = lambda: require("executorch.runtime", "executorch", INSTALL_HINT)  # noqa: E731
    executorch = require("executorch", "executorch", INSTALL_HINT)
    if "executorch.exir" in sys.modules or "executorch.runtime" in sys.modules:
        return plain()
    spec = importlib.util.find_spec("executorch.exir")
    if spec is None:
        return plain()
    sys.modules["executorch.exir"] = executorch.exir = importlib.util.module_from_spec(spec)
    try:
        module = importlib.import_module("executorch.runtime")
    except Exception:  # anything this release's import needs of the compiler: the plain import below
        module = None
        for name in [name for name in sys.modules if name.startswith(("executorch.runtime", "executorch.extension"))]:
            del sys.modules[name]
    finally:
        del sys.modules["executorch.exir"]
        with contextlib.suppress(AttributeError):
            del executorch.exir
    return module if module is not None else plain()


def delegation_summary(graph_module: Any) -> dict[str, Any]:
    """What the delegates took of a lowered program, as ExecuTorch's devtools count it: operators inside delegated
    subgraphs, and those left to ExecuTorch's own kernels. The `getitem`s that unpack a delegate's outputs are
    not operators and are not counted."""
    from executorch.devtools.backend_debug import get_delegation_info
    from executorch.exir.lowered_backend_module import get_lowered_backend_modules

    info = get_delegation_info(graph_module)
    ops = {name: count for name, count in info.delegation_by_operator.items() if name != "getitem"}
    return {
        "backends": sorted({module.backend_id for module in get_lowered_backend_modules(graph_module)}),
        "delegated_ops": sum(count.delegated for count in ops.values()),
        "ops": sum(count.delegated + count.non_delegated for count in ops.values()),
        "subgraphs": info.num_delegated_subgraphs,
        "not_delegated": sorted(name for name, count in ops.items() if count.non_delegated),
        "delegated_quant_ops": sum(count.delegated for name, count in ops.items() if "quantize" in name),
    }


def describe_delegation(summary: dict[str, Any]) -> str:
    """`XnnpackBackend: 47 of 49 ops (not delegated: aten_mean_dim)`."""
    text = f"{', '.join(summary['backends']) or 'no delegate'}: {summary['delegated_ops']} of {summary['ops']} ops"
    return text + (f" (not delegated: {', '.join(summary['not_delegated'])})" if summary["not_delegated"] else "")


def cached_delegation(path: Path) -> dict[str, Any] | None:
    """The delegation summary kept beside a cached program, or None when it is missing or damaged."""
    summary = json_entry(path)
    if summary is None or all(key in summary for key in DELEGATION_KEYS):
        return summary
    discard_entry(path, "not a delegation summary")
    return None


class ExecuTorchXnnpack:
    name = "executorch"
    precisions = ("fp32", "int8")

    def __init__(self) -> None:
        self._runtime = runtime_module().Runtime
        self._method = None
        self._delegation: dict[str, Any] | None = None  # set by _lower: what this process's lowering delegated

    def version(self) -> str:
        from importlib import metadata

        return metadata.version("executorch")

    def load(self, ctx: LoadContext) -> None:
        from executorch.extension.pybindings import portable_lib

        from .pt2e import XNNPACK_STYLE_RECIPE, int8_versions

        has_torch_module(ctx, self.name)
        versions = {"executorch": self.version()}
        if ctx.precision == "int8":
            versions.update(int8_versions(ctx, XNNPACK_STYLE_RECIPE))
        path = cached_conversion(ctx, "executorch", ".pte", versions, lambda: self._lower(ctx))
        delegation = self._delegation_of(ctx, path)
        portable_lib._unsafe_reset_threadpool(ctx.threads)
        ctx.info["executorch_threads"] = int(portable_lib._threadpool_get_thread_count())
        if ctx.info["executorch_threads"] != ctx.threads:
            raise BackendUnavailable(f"ExecuTorch's thread pool runs {ctx.info['executorch_threads']} threads, "
                                     f"not the {ctx.threads} asked for")
        self._method = self._runtime.get().load_program(str(path)).load_method("forward")
        ctx.info["artifact_path"] = str(path)
        ctx.info["executorch_delegated"] = describe_delegation(delegation)
        if ctx.precision == "int8":
            quantized = delegation.get("delegated_quant_ops", 0)
            if not quantized:
                raise BackendUnavailable("asked ExecuTorch for int8, but XNNPACK took no quantized operator")
            ctx.info["int8_compute_ops"] = (f"{quantized} quantize/dequantize operators delegated to XNNPACK "
                                            f"(its int8 kernels); {delegation['delegated_ops']} of {delegation['ops']}"
                                            " ops delegated")

    def _delegation_of(self, ctx: LoadContext, program: Path) -> dict[str, Any]:
        """What the delegate took of the cached program: counted when it was lowered, kept beside it (`.json`)."""
        summary_path = program.with_suffix(".json")
        if self._delegation is None:  # the program came from the cache
            summary = cached_delegation(summary_path)
            if summary is not None:
                return summary
            # A program cached before its summary was kept, or a damaged summary: lower it again to count.
            write_entry(program, self._lower(ctx))
        write_entry(summary_path, json.dumps(self._delegation).encode())
        return self._delegation

    def _lower(self, ctx: LoadContext) -> bytes:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        example = (torch.zeros(ctx.model.input_shape),)
        module = torch_module(ctx, self.name).eval()
        if ctx.precision == "int8":
            module = self._quantized(ctx, module)
        with contextlib.redirect_stdout(io.StringIO()):
            exported = torch.export.export(module, example)
            lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
            self._delegation = delegation_summary(lowered.exported_program().graph_module)
            program = lowered.to_executorch()
        return bytes(program.buffer)

    @staticmethod
    def _quantized(ctx: LoadContext, module: torch.nn.Module) -> torch.nn.Module:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        from .pt2e import quantize_xnnpack_style

        return quantize_xnnpack_style(ctx, module, "ExecuTorch", XNNPACKQuantizer, get_symmetric_quantization_config)[0]

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return [torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))]

    def forward(self, inputs: Any) -> Any:
        return self._method.execute(inputs)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return outputs[0].detach().float().numpy().astype(np.float32)


def create(name: str) -> ExecuTorchXnnpack:
    return ExecuTorchXnnpack()
