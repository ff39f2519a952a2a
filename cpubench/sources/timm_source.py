"""`timm:NAME`: any timm architecture, seeded unless --weights (nothing is downloaded); input size and
normalisation from its pretrained configuration."""

from __future__ import annotations

from pathlib import Path

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


def _timm():
    try:
        import timm
    except ImportError:
        raise UsageError("--models timm:...: timm is not installed; run `pip install -e '.[models]'` "
                         "(`make` installs it)") from None
    return timm


def check(target: str) -> None:
    timm = _timm()
    names = timm.list_models()
    if target not in names:
        raise UsageError(f"--models: timm has no architecture {target!r}{suggest(target, names, 'timm names')}")


def build(spec: ModelSpec, weights: Path | None, input_size: tuple[int, int] | None) -> BuiltModel:
    import torch

    timm = _timm()
    torch.manual_seed(SEED)
    model = timm.create_model(spec.target, pretrained=False)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    # The evaluation size where timm has one (`test_input_size`), else the training size.
    channels, height, width = cfg.get("test_input_size") or cfg.get("input_size", (3, 224, 224))
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    if weights is not None:
        apply_weights(model, Path(weights), f"timm's {spec.target}")
        source = f"checkpoint {Path(weights).name}"
    else:
        source = seeded_init_source()
    model.eval()
    return BuiltModel(spec.text, model, source, state_digest(model),
                      (1, int(channels), *(input_size or (int(height), int(width)))),
                      key=safe_key(f"timm-{spec.target}"), mean=mean, std=std)
