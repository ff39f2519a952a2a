"""`onnx:PATH`: an ONNX classifier file, used as is by the ONNX-based backends (PyTorch-based ones skip). Its
input's static shape decides the input size (--input-size fills in symbolic height and width); logs and caches
are keyed by its content digest, so an edited file never picks up a stale log."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import UsageError
from ..models import BuiltModel, ModelSpec, disk_key_of


def check(target: str) -> None:
    path = Path(target)
    if not path.is_file():
        raise UsageError(f"--models onnx:{target}: no such file")


def _dims(value_info) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def build(spec: ModelSpec, weights: Path | None, input_size: tuple[int, int] | None) -> BuiltModel:
    import onnx

    path = Path(spec.target)
    if weights is not None:
        raise UsageError(f"--weights: {spec.text} is an ONNX file with its own weights; --weights applies to "
                         "torch-defined models")
    data = path.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and others
        raise UsageError(f"--models {spec.text}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    initializers = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UsageError(f"--models {spec.text}: expected one image input, the graph has {len(inputs)} "
                         f"({', '.join(i.name for i in inputs)})")
    dims = _dims(inputs[0])
    if len(dims) != 4:
        raise UsageError(f"--models {spec.text}: input {inputs[0].name!r} has shape {dims}, not (N, C, H, W)")
    channels = dims[1] if isinstance(dims[1], int) and dims[1] > 0 else 3
    if input_size is None:
        if not all(isinstance(d, int) and d > 0 for d in dims[2:]):
            raise UsageError(f"--models {spec.text}: input {inputs[0].name!r} has symbolic height/width {dims[2:]}; "
                             "give --input-size")
        input_size = (int(dims[2]), int(dims[3]))
    outputs = [_dims(o) for o in proto.graph.output]
    if len(outputs) != 1 or len(outputs[0]) != 2:
        raise UsageError(f"--models {spec.text}: returns outputs of shape {outputs}; the suite compares "
                         "classifiers, whose one output is (batch, classes)")
    digest = hashlib.sha256(data).hexdigest()[:12]
    return BuiltModel(spec.text, None, f"ONNX file {path.name} (sha256 {digest})", digest,
                      (1, int(channels), *input_size), key=disk_key_of(spec.text),
                      onnx_file=path.resolve(), input_name=inputs[0].name,
                      notes=("preprocessing assumed: ImageNet mean/std on RGB in [0, 1]",))
