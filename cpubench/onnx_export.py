"""ONNX export of a PyTorch model, shared by the ONNX Runtime and TVM backends and cached on disk."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from .cache import cached_path, content_key, usable_entry, write_entry
from .models import BuiltModel

INPUT_NAME = "input"
OPSET = 18


def export_onnx(model: BuiltModel) -> Path:
    """Export `model` once per (model, weights, torch version, shape); later calls return the cached file. An
    `onnx:` model is its own file, used as is."""
    import onnx

    if model.onnx_file is not None:
        return model.onnx_file
    key = content_key(model=model.disk_key, weights=model.weights_digest, torch=torch.__version__,
                      onnx=onnx.__version__, shape=model.input_shape, opset=OPSET)
    path = cached_path("onnx", f"{model.disk_key}-{key}", ".onnx")
    if usable_entry(path):  # a truncated export is re-exported, not handed to ONNX Runtime or TVM
        return path
    example = torch.zeros(model.input_shape)
    # The dynamo exporter (the default) keeps EfficientNet's "same" padding static, which TVM needs.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.module, (example,), input_names=[INPUT_NAME],
                                    output_names=["logits"], opset_version=OPSET, dynamo=True,
                                    external_data=False, verbose=False)
    proto = program.model_proto
    write_entry(path, proto.SerializeToString())
    return path
