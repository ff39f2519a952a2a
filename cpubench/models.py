"""The models a run compares: named ones (`resnet18`, `efficientnet_lite0`), or any `torchvision:NAME`,
`timm:NAME` or `onnx:PATH`. Each source is a module under `sources/` with the same two functions; this module
parses `--models`, checks each spec at start-up and builds it once per session."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError

# Seed of the deterministic initialisation used when no real weights are at hand.
RESNET18_SEED = 20210430
SEED = RESNET18_SEED
# ImageNet's normalisation: the default of every model, and of a photo's preprocessing (images.py).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The suite's own models (sources/named.py), run when --models is not given.
MODELS = ("resnet18", "efficientnet_lite0")
# prefix -> module under cpubench.sources; a spec without a prefix is a named model (sources/named.py).
SOURCES = {"torchvision": "torchvision_source", "timm": "timm_source", "onnx": "onnx_file"}


@dataclass(frozen=True)
class BuiltModel:
    name: str
    module: Any  # torch.nn.Module in eval mode; None for an ONNX file (PyTorch-based backends then skip)
    weights_source: str  # human-readable: where the weights came from
    weights_digest: str  # content hash of the weights (or of the ONNX file), part of every cache key
    input_shape: tuple[int, int, int, int]
    key: str = ""  # safe on disk, unique per content: caches and tuning_logs/<key>/; default: name
    onnx_file: Path | None = None  # the user's ONNX file, used as is instead of an export
    input_name: str = "input"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    notes: tuple[str, ...] = field(default=())  # shown in the report (e.g. assumed preprocessing)

    @property
    def disk_key(self) -> str:
        return self.key or self.name

    def with_batch(self, batch_size: int) -> BuiltModel:
        from dataclasses import replace

        return replace(self, input_shape=(batch_size, *self.input_shape[1:]))


@dataclass(frozen=True)
class ModelSpec:
    """One entry of --models, parsed: the source and what follows its prefix."""

    text: str
    source: str  # "named" or a key of SOURCES
    target: str

    @property
    def test_id(self) -> str:
        """Readable in test ids and `-k`: the spec, with an ONNX file shown by its name only."""
        return f"onnx:{Path(self.target).stem}" if self.source == "onnx" else self.text


def source_module(source: str):
    return importlib.import_module(f"{__package__}.sources.{'named' if source == 'named' else SOURCES[source]}")


def parse_spec(text: str) -> ModelSpec:
    prefix, sep, rest = text.partition(":")
    if sep and prefix in SOURCES:
        if not rest:
            raise UsageError(f"--models: {text!r} names no model after '{prefix}:'")
        return ModelSpec(text, prefix, rest)
    return ModelSpec(text, "named", text)


def check_spec(spec: ModelSpec) -> None:
    """Fail at start-up, naming the option, for a model that does not exist; suggest the closest names."""
    source_module(spec.source).check(spec.target)


def disk_key_of(text: str) -> str:
    """The folder name a model's tuning logs and caches use, known without building it."""
    spec = parse_spec(text)
    if spec.source == "named":
        return spec.target
    if spec.source == "onnx":
        digest = hashlib.sha256(Path(spec.target).read_bytes()).hexdigest()[:12]
        return safe_key(f"onnx-{Path(spec.target).stem}-{digest}")
    return safe_key(f"{spec.source}-{spec.target}")


def suggest(name: str, candidates: list[str], what: str) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    return f"; closest {what}: {', '.join(close)}" if close else ""


def safe_key(text: str) -> str:
    """A folder name for caches and tuning logs: letters, digits, `_`, `.`, `-` only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "model"


def seeded_init_source(checkpoint: str = "CHECKPOINT") -> str:
    """The weights source of a model initialised from SEED, saying how to give it real weights."""
    return f"seeded random init (seed {SEED}); pass --weights {checkpoint} for real weights"


def state_digest(module: Any) -> str:
    h = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        h.update(key.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def load_state_dict(path: Path) -> dict:
    import torch

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


def apply_weights(module: Any, path: Path, model_name: str) -> None:
    try:
        module.load_state_dict(load_state_dict(path), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"--weights: {path} does not fit {model_name} ({first})") from None


def check_output(model: BuiltModel) -> int:
    """Run the torch module once on zeros: a classifier returns (batch, classes). Returns the class count."""
    import torch

    with torch.inference_mode():
        out = model.module(torch.zeros(model.input_shape))
    if isinstance(out, (tuple, list)) or getattr(out, "ndim", 0) != 2 or out.shape[0] != model.input_shape[0]:
        shape = [tuple(o.shape) for o in out] if isinstance(out, (tuple, list)) else tuple(getattr(out, "shape", ()))
        raise UsageError(f"--models: {model.name} returned output of shape {shape}; the suite compares "
                         f"classifiers, whose output is (batch, classes), here ({model.input_shape[0]}, N)")
    return int(out.shape[1])


def build_model(name: str, weights: Path | None = None, batch_size: int = 1,
                input_size: tuple[int, int] | None = None) -> BuiltModel:
    spec = parse_spec(name)
    check_spec(spec)
    built: BuiltModel = source_module(spec.source).build(spec, weights, input_size)
    built = built.with_batch(batch_size) if batch_size != built.input_shape[0] else built
    if built.module is not None:
        check_output(built)
    return built


def preprocessing_note(model: BuiltModel) -> str:
    size = "x".join(map(str, model.input_shape[2:]))
    same = np.allclose(model.mean, IMAGENET_MEAN) and np.allclose(model.std, IMAGENET_STD)
    return f"{size}, {'ImageNet' if same else 'model'} mean/std {tuple(round(m, 3) for m in model.mean)}"
