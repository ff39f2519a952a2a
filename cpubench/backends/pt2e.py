"""PT2E static quantization, shared by the backends that quantize the torch module themselves (torch-compile,
ExecuTorch, LiteRT): export, observe the calibration set, convert. What they share besides the steps:

- The first convolution stays float32 (`first_convolution`).
- XNNPACK-style quantizers (ExecuTorch's XNNPACKQuantizer, litert-torch's PT2EQuantizer) quantize a convolution
  followed by ReLU as one operator, but not one followed by ReLU6; `conv_clamp_quantizer` teaches them that.
- Their activation ranges come from the minimum and maximum seen (`min_max_activations`), as ONNX Runtime's int8
  takes them, rather than a histogram observer's clipped range.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import TYPE_CHECKING, Any

from . import BackendUnavailable, LoadContext, calibration_batches

if TYPE_CHECKING:  # torch is imported where it is used: a cached LiteRT file loads without it
    import torch

# How ExecuTorch's and LiteRT's int8 are quantized (`conv_clamp_quantizer`, `min_max_activations`), in the cache key
# of their int8 files: a change here makes new ones.
XNNPACK_STYLE_RECIPE = ("PT2E, static, symmetric int8 per-channel weights, min-max activation ranges, convolution + "
                        "ReLU6 quantized as one, first convolution float32")
# ReLU6 as torch.export writes it: nn.ReLU6 (and its in-place form) as hardtanh, F.relu6 as relu6.
CLAMPS = ("hardtanh.default", "hardtanh_.default", "relu6.default")


def int8_versions(ctx: LoadContext, recipe: str) -> dict[str, str]:
    """What an int8 conversion's cache key adds: the recipe and the calibration images' digest."""
    import numpy as np

    if ctx.calibration is None:
        raise BackendUnavailable("int8 needs the calibration set, and none was given")
    digest = hashlib.sha256(np.ascontiguousarray(ctx.calibration, dtype=np.float32).tobytes()).hexdigest()[:16]
    return {"precision": "int8", "quantizer": recipe, "calibration": digest}


def first_convolution(module: torch.nn.Module) -> str | None:
    """The name of the model's first convolution, which stays float32 in int8: it sees the normalised image, whose
    per-tensor uint8 grid cost EfficientNet-Lite0 its answer on 5 of 36 evaluation images (86% agreement; 100% with
    that one layer in float32). ONNX Runtime's QDQ model quantizes it and keeps 100%."""
    import torch

    return next((name for name, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)), None)


def inside(module_name: str | None, node: torch.fx.Node) -> bool:
    """Whether an exported graph's node comes from submodule `module_name`."""
    stack = node.meta.get("nn_module_stack", {}).values()
    return module_name is not None and any(path.removeprefix("L['self'].") == module_name for path, _ in stack)


def min_max_activations(config: Any) -> Any:
    """`config` with activation ranges from the minimum and maximum seen. The XNNPACK-style default, a histogram
    observer, clips the largest values, and cost EfficientNet-Lite0 1 of 36 answers."""
    from torchao.quantization.pt2e.observer import MinMaxObserver

    activations = dataclasses.replace(config.input_activation,
                                      observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=activations, output_activation=activations)


def conv_clamp_quantizer(base: type, float_module: str | None) -> Any:
    """An instance of `base` (an XNNPACK-style quantizer class) that also quantizes convolution + ReLU6 as one
    operator, as it does convolution + ReLU. Without it the convolution's output is quantized before the clamp,
    over a range mostly cut off just after, and EfficientNet-Lite0 (ReLU6 after nearly every convolution) lost 3 of
    36 answers. The clamp then becomes the output range, which XNNPACK's int8 convolution applies itself; the rest
    is left to `base`. Submodule `float_module` stays float32: its nodes are marked as done before `base` annotates
    (litert-torch's quantizer has no filter, and neither takes a `None` config per module name)."""
    import torch
    from torchao.quantization.pt2e.quantizer import (
        QuantizationAnnotation,
        get_bias_qspec,
        get_input_act_qspec,
        get_output_act_qspec,
        get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY
    from torchao.quantization.pt2e.utils import _is_conv_node

    def annotate_conv_clamp(graph_module: torch.fx.GraphModule, config: Any) -> None:
        for node in graph_module.graph.nodes:
            if inside(float_module, node):
                node.meta.setdefault(Q_ANNOTATION_KEY, QuantizationAnnotation(_annotated=True))
        for clamp in graph_module.graph.nodes:
            if clamp.op != "call_function" or str(clamp.target).removeprefix("aten.") not in CLAMPS:
                continue
            conv = clamp.args[0]
            if not isinstance(conv, torch.fx.Node) or not _is_conv_node(conv) or len(conv.users) > 1:
                continue
            inputs = {conv.args[0]: get_input_act_qspec(config), conv.args[1]: get_weight_qspec(config)}
            bias = conv.args[2] if len(conv.args) > 2 else None
            if isinstance(bias, torch.fx.Node):
                inputs[bias] = get_bias_qspec(config)
            nodes = [clamp, conv, *list(inputs)[1:]]
            if any(Q_ANNOTATION_KEY in node.meta for node in nodes):
                continue
            conv.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
            clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(output_qspec=get_output_act_qspec(config),
                                                                  _annotated=True)
            for node in nodes[2:]:
                node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)

    class ConvClampQuantizer(base):  # type: ignore[misc,valid-type]
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            annotate_conv_clamp(model, self.global_config)
            return super().annotate(model)

    ConvClampQuantizer.__name__ = f"{base.__name__}+conv-relu6"
    return ConvClampQuantizer()


def quantize(ctx: LoadContext, module: torch.nn.Module, quantizer: Any, **convert: Any) -> torch.nn.Module:
    """`module` exported (strict: the default non-strict export merges the two calls of torchvision's reused
    `relu` into one partition, which quantizers reject with "Input partition has more than one output node",
    pytorch/ao#4478), prepared with `quantizer`, run on every calibration image, converted (`convert` goes to
    convert_pt2e). Records the calibration and its seconds in ctx.info."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if ctx.calibration is None:
        raise BackendUnavailable("int8 needs the calibration set, and none was given")
    started = time.perf_counter()
    with torch.no_grad():
        exported = torch.export.export(module, (torch.zeros(ctx.model.input_shape),), strict=True).module()
        prepared = prepare_pt2e(exported, quantizer)
        for batch in calibration_batches(ctx):
            prepared(torch.from_numpy(batch))
        converted = convert_pt2e(prepared, **convert)
    ctx.info.update({"quantization_export": "torch.export.export(strict=True)",
                     "calibration_images": len(ctx.calibration),
                     "quantize_seconds": round(time.perf_counter() - started, 2)})
    return converted


def quantize_xnnpack_style(ctx: LoadContext, module: torch.nn.Module, runtime: str, base: type,
                           symmetric_config: Any, **convert: Any) -> tuple[torch.nn.Module, Any]:
    """`module` quantized for XNNPACK by `base` (ExecuTorch's XNNPACKQuantizer or litert-torch's PT2EQuantizer) and its
    `get_symmetric_quantization_config`, per channel, with this module's two corrections and the first convolution
    float32; returns the converted module and the quantizer (LiteRT's converter wants it too)."""
    stem = first_convolution(module)
    quantizer = conv_clamp_quantizer(base, float_module=stem).set_global(
        min_max_activations(symmetric_config(is_per_channel=True)))
    ctx.info.update({"quantizer": f"{runtime} {base.__name__} ({XNNPACK_STYLE_RECIPE})",
                     "quantization_float_layers": f"{stem} (the first convolution)" if stem else "none"})
    return quantize(ctx, module, quantizer, **convert), quantizer
