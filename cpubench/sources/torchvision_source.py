"""`torchvision:NAME`: any torchvision classification model, seeded unless --weights or torchvision's local cache
holds its weights; input size and normalisation from the weights' own transforms."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SEED,
    BuiltModel,
    ModelSpec,
    apply_weights,
    safe_key,
    seeded_init_source,
    state_digest,
    suggest,
)


def classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check(target: str) -> None:
    names = classification_models()
    if target not in names:
        raise UsageError(f"--models: torchvision has no classification model {target!r}"
                         f"{suggest(target, names, 'torchvision names')}")


def _default_weights(name: str) -> Any:
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError):
        return None


def build(spec: ModelSpec, weights: Path | None, input_size: tuple[int, int] | None) -> BuiltModel:
    import torch
    import torchvision

    name = spec.target
    default = _default_weights(name)
    size, mean, std = (224, 224), IMAGENET_MEAN, IMAGENET_STD
    if default is not None:
        transform = default.transforms()
        crop = getattr(transform, "crop_size", [224])
        size = (int(crop[0]), int(crop[-1]))
        mean, std = tuple(transform.mean), tuple(transform.std)
    torch.manual_seed(SEED)
    kwargs = {"aux_logits": False, "init_weights": True} if name in {"inception_v3", "googlenet"} else {}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    cached = _cached_checkpoint(default) if weights is None else None
    if weights is not None or cached is not None:
        path = Path(weights or cached)
        apply_weights(model, path, f"torchvision's {name}")
        source = f"checkpoint {path.name}" if weights is not None else f"torchvision cache {path.name}"
    else:
        source = seeded_init_source()
    model.eval()
    return BuiltModel(spec.text, model, source, state_digest(model), (1, 3, *(input_size or size)),
                      key=safe_key(f"torchvision-{name}"), mean=mean, std=std)


def _cached_checkpoint(weights: Any) -> Path | None:
    """torchvision's own download cache, if it already holds these weights (nothing is downloaded)."""
    if weights is None:
        return None
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    path = hub / Path(weights.url).name
    return path if path.is_file() else None
