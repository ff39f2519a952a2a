"""Floating-point operations of one forward pass of an ONNX model, counted from its graph the way PyTorch's
FlopCounterMode counts them (convolutions and matrix products only), and the part the Winograd lowering rewrites."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import winograd

if TYPE_CHECKING:
    import onnx

# Protobuf cannot serialize a message of 2 GiB or more, and in-memory shape inference serializes the model.
_PROTOBUF_LIMIT = 2**31 - 1
_CONVS = frozenset({"Conv", "ConvInteger", "QLinearConv", "ConvTranspose"})
_MATMULS = frozenset({"MatMul", "MatMulInteger", "QLinearMatMul"})
_COUNTED = _CONVS | _MATMULS | {"Gemm"}
_STANDARD_DOMAINS = ("", "ai.onnx")
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})

Shape = tuple[int, ...]


@dataclass(frozen=True)
class FlopCount:
    """FLOPs (2 per multiply-add) of one forward pass: all counted nodes, and the convolutions `winograd.rewrite`
    would turn into Winograd transforms (counted as direct convolutions, like `total`)."""

    total: int
    winograd_eligible: int
    unknown: list[str] = field(default_factory=list)  # counted nodes without shapes; onnx_flops returns None then
    # Of `total`, the multiply-adds of convolutions whose input tap falls on zero padding: counted, as every FLOP
    # counter does, but a convolution that computes only the valid taps (oneDNN's brgemm convolutions) skips them.
    padding: int = field(default=0, compare=False)  # tested apart; equal counts are equal FLOPs

    @property
    def winograd_share(self) -> float:
        return self.winograd_eligible / self.total if self.total else 0.0


def onnx_flops(path: str | Path, input_shapes: Mapping[str, Sequence[int]] | None = None) -> FlopCount | None:
    """FLOPs of one forward pass of the ONNX model at `path`: Conv (and ConvInteger, QLinearConv, ConvTranspose),
    Gemm and MatMul (and MatMulInteger, QLinearMatMul); other operators count nothing, as in FlopCounterMode.
    `input_shapes` fixes graph inputs' symbolic dimensions (a dynamic batch) before shape inference. None, never an
    exception, when the file is not a readable model or a counted node's shapes cannot be inferred."""
    try:
        import onnx

        # Shape inference needs the weights' dims, not their values: leave external data on disk.
        model = onnx.load(str(path), load_external_data=False)
        if not model.HasField("graph"):
            return None
        if model.functions:
            # Counted nodes inside local functions (dynamo exports of some modules) only get shapes once inlined.
            from onnx.inliner import inline_local_functions  # onnx >= 1.16; the project requires 1.17

            model = inline_local_functions(model)
        if input_shapes:
            _fix_input_shapes(model.graph, input_shapes)
        count = _count(_infer_shapes(model).graph)
    except Exception:  # protobuf, onnx and OS errors of all kinds mean the same here: no count
        return None
    return None if count.unknown else count


def padding_allowance(count: FlopCount) -> float:
    """How much faster than its counted FLOPs allow a convolution that skips the padded taps may run: the counted
    FLOPs over those that remain (ResNet18: 7.4% of its counted FLOPs fall on padding, EfficientNet-Lite0: 1.0%)."""
    return count.total / (count.total - count.padding) if count.total > count.padding else 1.0


def winograd_allowance(count: FlopCount) -> float:
    """How much faster than its direct-FLOP rate a Winograd build of the model may plausibly run: the eligible
    share of the FLOPs needs only MULTIPLY_SHARE of its multiplications."""
    return 1.0 / (1.0 - count.winograd_share * (1.0 - winograd.MULTIPLY_SHARE))


def _fix_input_shapes(graph: onnx.GraphProto, input_shapes: Mapping[str, Sequence[int]]) -> None:
    for value in graph.input:
        if value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in input_shapes[value.name]:
                dims.add().dim_value = int(size)
    # Stored intermediate shapes still carry the symbolic dims; inference recomputes them from the fixed inputs.
    del graph.value_info[:]


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    if model.ByteSize() < _PROTOBUF_LIMIT:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    with tempfile.TemporaryDirectory(prefix="cpubench-flops-") as tmp:
        source, inferred = Path(tmp) / "model.onnx", Path(tmp) / "inferred.onnx"
        onnx.save_model(model, str(source), save_as_external_data=True, location="model.data")
        onnx.shape_inference.infer_shapes_path(str(source), str(inferred), strict_mode=False, data_prop=True)
        return onnx.load(str(inferred), load_external_data=False)


def _count(graph: onnx.GraphProto) -> FlopCount:
    types = _value_types(graph)
    constants = _constants(graph)

    def shape(name: str) -> Shape | None:
        dims = types.get(name, (0, None))[1] if name else None
        return None if dims is None or None in dims else tuple(int(d) for d in dims if d is not None)

    total = eligible = padding = 0
    unknown: list[str] = []
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}#{index}"
        if node.op_type in _CONTROL_FLOW and _has_counted_subgraph(node):
            unknown.append(name)  # a branch or loop body runs an unknown number of times (if at all)
            continue
        if node.op_type not in _COUNTED or node.domain not in _STANDARD_DOMAINS:
            continue
        macs = _macs(node, shape)
        if macs is None:
            unknown.append(name)
            continue
        total += 2 * macs
        if _winograd_eligible(node, types, constants, shape):
            eligible += 2 * macs
        padding += 2 * (macs - _valid_macs(node, shape, macs))
    return FlopCount(total, eligible, unknown, padding)


def _value_types(graph: onnx.GraphProto) -> dict[str, tuple[int, tuple[int | None, ...] | None]]:
    """name -> (element type, dims with None for a symbolic or missing one; None for an unknown rank)."""
    types: dict[str, tuple[int, tuple[int | None, ...] | None]] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if not value.type.HasField("tensor_type"):
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim) \
            if tensor.HasField("shape") else None
        types[value.name] = (tensor.elem_type, dims)
    for init in graph.initializer:  # an initializer's dims are its own, whatever an input of that name declares
        types[init.name] = (init.data_type, tuple(init.dims))
    return types


def _constants(graph: onnx.GraphProto) -> set[str]:
    """Values TVM's import and FoldConstant make constants: initializers (even those also listed as graph
    inputs), Constant nodes' outputs, and whatever is computed from constants only."""
    constants = {init.name for init in graph.initializer}
    for node in graph.node:  # ONNX nodes are in topological order
        inputs = [name for name in node.input if name]
        random = node.op_type.startswith("Random") or node.op_type in ("Bernoulli", "Multinomial")
        if node.op_type == "Constant" or (inputs and not random and all(name in constants for name in inputs)):
            constants.update(name for name in node.output if name)
    return constants


def _has_counted_subgraph(node: onnx.NodeProto) -> bool:
    for attr in node.attribute:
        for graph in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
            for inner in graph.node:
                if inner.op_type in _COUNTED or (inner.op_type in _CONTROL_FLOW and _has_counted_subgraph(inner)):
                    return True
    return False


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    from onnx import helper

    return {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}


def _macs(node: onnx.NodeProto, shape: Callable[[str], Shape | None]) -> int | None:
    """Multiply-adds of one counted node, None when a shape it needs is unknown. Biases and zero points count
    nothing, as in FlopCounterMode."""
    op = node.op_type
    if op in _CONVS:
        x = shape(node.input[0])
        w = shape(node.input[3 if op == "QLinearConv" else 1])
        if x is None or w is None:
            return None
        if op == "ConvTranspose":
            # Each input pixel scatters into Cout/group x k outputs per input channel; W is (Cin, Cout/group, k...).
            # FlopCounterMode counts a transposed convolution over its input map in the same way.
            return x[0] * math.prod(w) * math.prod(x[2:])
        y = shape(node.output[0])
        # Every output element is a dot product over Cin/group x k (W is Cout x Cin/group x k...).
        return None if y is None else math.prod(y) * math.prod(w[1:])
    if op == "Gemm":
        a, b = shape(node.input[0]), shape(node.input[1])
        if a is None or b is None or len(a) != 2 or len(b) != 2:
            return None
        attrs = _attrs(node)
        m, k = (a[1], a[0]) if attrs.get("transA", 0) else a
        n = b[0] if attrs.get("transB", 0) else b[1]
        return m * k * n
    # MatMul, MatMulInteger, QLinearMatMul: A is input 0 in all three. Every output element, whatever the
    # broadcast batch dims and 1-D operands, is a dot product over A's last dim.
    a, y = shape(node.input[0]), shape(node.output[0])
    return None if a is None or y is None or not a else math.prod(y) * a[-1]


def _valid_macs(node: onnx.NodeProto, shape: Callable[[str], Shape | None], macs: int) -> int:
    """A Conv's multiply-adds whose input tap lies inside the input map (not on padding); `macs` for every other
    node, and for a Conv whose padding is not given as explicit `pads` (or absent)."""
    if node.op_type != "Conv":
        return macs
    attrs = _attrs(node)
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) != "NOTSET":
        return macs
    x, w, y = shape(node.input[0]), shape(node.input[1]), shape(node.output[0])
    dims = len(w) - 2
    pads = list(attrs.get("pads", [0] * 2 * dims))
    strides = list(attrs.get("strides", [1] * dims))
    dilations = list(attrs.get("dilations", [1] * dims))
    valid = y[0] * y[1] * w[1]  # batch x Cout x Cin/group
    for i in range(dims):
        size, kernel, begin = x[2 + i], w[2 + i], pads[i]
        valid *= sum(1 for o in range(y[2 + i]) for k in range(kernel)
                     if 0 <= o * strides[i] - begin + k * dilations[i] < size)
    return valid


def _winograd_eligible(node: onnx.NodeProto, types: Mapping[str, tuple[int, tuple[int | None, ...] | None]],
                       constants: set[str], shape: Callable[[str], Shape | None]) -> bool:
    """Whether `winograd.rewrite` rewrites this node once TVM imports the graph: a 2-D Conv (relax.nn.conv2d, which
    the lowering converts to NHWC/OHWI) that `winograd.eligible` accepts, on a map `winograd.tile_for` tiles."""
    from onnx import TensorProto

    if node.op_type != "Conv":  # the integer convolutions have integer weights, ConvTranspose is no conv2d
        return False
    x, w = shape(node.input[0]), shape(node.input[1])
    if x is None or w is None or len(w) != 4:
        return False
    float32 = TensorProto.FLOAT
    if node.input[1] not in constants or types[node.input[1]][0] != float32:
        return False
    if types.get(node.output[0], (float32, None))[0] != float32:
        return False
    attrs = _attrs(node)
    if list(attrs.get("strides", [1, 1])) != [1, 1] or list(attrs.get("dilations", [1, 1])) != [1, 1]:
        return False
    if attrs.get("group", 1) != 1 or tuple(w[2:]) != (3, 3):
        return False
    height, width = x[2], x[3]
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) in ("SAME_UPPER", "SAME_LOWER"):
        # TVM's importer pads the data explicitly for these (kernel - 1 at stride 1), and `rewrite` asks tile_for
        # about the convolution's input, so the padded size decides.
        height, width = height + 2, width + 2
    return winograd.tile_for(height, width) is not None
