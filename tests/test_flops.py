"""FLOPs counted from ONNX graphs (cpubench/flops.py): exact counts on hand-built graphs, agreement with PyTorch's
FlopCounterMode on exported modules, and the Winograd-eligible part mirroring winograd.py's rule."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch.utils.flop_counter import FlopCounterMode

from cpubench import flops, winograd
from cpubench.flops import FlopCount, onnx_flops, padding_allowance, winograd_allowance
from cpubench.models import BuiltModel
from cpubench.onnx_export import export_onnx

FLOAT = TensorProto.FLOAT
MIN = winograd.MIN_SIZE


def save(path: Path, nodes: list, inputs: list, outputs: list, initializers: tuple = (),
         functions: tuple = (), extra_opsets: tuple = ()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", 18), *extra_opsets]
    onnx.save(helper.make_model(graph, opset_imports=opsets, functions=list(functions)), str(path))
    return path


def value(name: str, shape: list | None, elem: int = FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def weight(name: str, shape: tuple[int, ...], dtype: type = np.float32):
    return numpy_helper.from_array(np.zeros(shape, dtype), name)


def conv_model(path: Path, hw: tuple[int, int] = (32, 32), cin: int = 4, cout: int = 8, kernel: int = 3,
               group: int = 1, dtype: type = np.float32, weight_as_input: bool = False, via_identity: bool = False,
               **attrs) -> Path:
    """One Conv (padding 1 unless told otherwise) on a 1 x cin x H x W map; output shapes left to inference."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    w_shape = (cout, cin // group, kernel, kernel)
    attrs = {"pads": [1, 1, 1, 1], **attrs} if "auto_pad" not in attrs else attrs
    inputs = [value("x", [1, cin, *hw], elem)]
    nodes, inits = [], ()
    if weight_as_input:
        inputs.append(value("w", list(w_shape), elem))
    elif via_identity:  # a weight computed from an initializer: constant once folded
        inits = (weight("w0", w_shape, dtype),)
        nodes.append(helper.make_node("Identity", ["w0"], ["w"]))
    else:
        inits = (weight("w", w_shape, dtype),)
    nodes.append(helper.make_node("Conv", ["x", "w"], ["y"], group=group, **attrs))
    return save(path, nodes, inputs, [value("y", None, elem)], inits)


def torch_flops(module: torch.nn.Module, shape: tuple[int, ...]) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros(shape))
    return counter.get_total_flops()


def exported(module: torch.nn.Module, shape: tuple[int, int, int, int], name: str, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project's own export (dynamo), into a cache under tmp_path."""
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path / "cache"))
    return export_onnx(BuiltModel(name, module.eval(), "random", f"{name}-random", shape))


WINOGRAD_CASES = [
    ("3x3 stride 1", {}, True),
    ("map of exactly MIN_SIZE", {"hw": (MIN, MIN)}, True),
    ("map one short of MIN_SIZE", {"hw": (MIN - 1, MIN - 1)}, False),
    ("the smaller side decides", {"hw": (2 * MIN, MIN - 1)}, False),
    ("stride 2", {"strides": [2, 2]}, False),
    ("dilation 2", {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, False),
    ("two groups", {"group": 2}, False),
    ("1x1 kernel", {"kernel": 1, "pads": [0, 0, 0, 0]}, False),
    ("5x5 kernel", {"kernel": 5, "pads": [2, 2, 2, 2]}, False),
    ("float16", {"dtype": np.float16}, False),
    ("weights not constant", {"weight_as_input": True}, False),
    ("weights folded from an initializer", {"via_identity": True}, True),
    # TVM's importer pads SAME convolutions explicitly, and the rewrite asks tile_for about the padded input.
    ("explicit pads two short of MIN_SIZE", {"hw": (MIN - 2, MIN - 2)}, False),
    ("SAME_UPPER two short of MIN_SIZE", {"hw": (MIN - 2, MIN - 2), "auto_pad": "SAME_UPPER"}, True),
    ("SAME_LOWER three short of MIN_SIZE", {"hw": (MIN - 3, MIN - 3), "auto_pad": "SAME_LOWER"}, False),
]


def test_conv_counts_every_multiply_add(tmp_path):
    count = onnx_flops(conv_model(tmp_path / "conv.onnx", cin=3))
    assert count == FlopCount(total=2 * 8 * 32 * 32 * 3 * 3 * 3, winograd_eligible=2 * 8 * 32 * 32 * 3 * 3 * 3)
    # Of each row's 32 x 3 (output, tap) pairs, 94 lie inside the map: padding 1 takes one tap at each edge.
    assert count.padding == 2 * 8 * 3 * (96 * 96 - 94 * 94)
    assert winograd_allowance(count) == pytest.approx(1 / winograd.MULTIPLY_SHARE)


def test_grouped_conv(tmp_path):
    count = onnx_flops(conv_model(tmp_path / "grouped.onnx", hw=(16, 16), cin=8, cout=8, group=4))
    assert count == FlopCount(total=2 * 8 * 16 * 16 * 2 * 3 * 3, winograd_eligible=0)


@pytest.mark.parametrize(("case", "kwargs", "eligible"), WINOGRAD_CASES, ids=[c[0] for c in WINOGRAD_CASES])
def test_winograd_eligibility_mirrors_the_rewrite(tmp_path, case, kwargs, eligible):
    count = onnx_flops(conv_model(tmp_path / "conv.onnx", **kwargs))
    assert count is not None and count.total > 0, case
    assert count.winograd_eligible == (count.total if eligible else 0), case


def winograd_call_sites(path: Path, shape: tuple[int, ...], input_name: str) -> int:
    """How many convolutions winograd.rewrite turns into Winograd calls, prepared as tvm_support does it."""
    import tvm
    from tvm import relax

    from cpubench import tvm_support as tv

    mod = tv.import_onnx(path, shape, input_name=input_name)
    layout = [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
              relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}), relax.transform.FoldConstant()]
    with tv.host_target(1):
        rewritten = winograd.rewrite(tvm.transform.Sequential(layout)(mod))
    return len(re.findall(r"call_tir\(conv2d_winograd\w*,", rewritten["main"].script()))


# TVM cannot import a graph whose weights are an input without a given shape; the benchmark never makes one.
IMPORTABLE = [c for c in WINOGRAD_CASES if "weight_as_input" not in c[1]]


# The hand-built graphs leave their outputs' shapes to inference, which TVM's model check complains about.
@pytest.mark.filterwarnings("ignore:Field 'shape' of 'type' is required:UserWarning")
@pytest.mark.parametrize(("case", "kwargs", "eligible"), IMPORTABLE, ids=[c[0] for c in IMPORTABLE])
def test_winograd_eligibility_agrees_with_the_rewrite_itself(tmp_path, case, kwargs, eligible):
    """The cases above, through TVM's import and winograd.rewrite: catches the two rules drifting apart."""
    pytest.importorskip("tvm")
    path = conv_model(tmp_path / "conv.onnx", **kwargs)
    assert winograd_call_sites(path, (1, 4, *kwargs.get("hw", (32, 32))), "x") == int(eligible), case


def test_gemm_with_transposed_operands(tmp_path):
    nodes = [helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1),
             helper.make_node("Gemm", ["at", "b", "c"], ["yt"], transA=1, transB=1)]
    path = save(tmp_path / "gemm.onnx", nodes, [value("a", [4, 16]), value("at", [16, 4])],
                [value("y", None), value("yt", None)], (weight("b", (10, 16)), weight("c", (10,))))
    assert onnx_flops(path) == FlopCount(total=2 * (2 * 4 * 16 * 10), winograd_eligible=0)


def test_batched_and_broadcast_matmul(tmp_path):
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"]),  # (2, 3, 5, 7) @ (3, 7, 4): batch dims broadcast
             helper.make_node("MatMul", ["v", "b"], ["yv"])]  # (7,) @ (3, 7, 4) -> (3, 4)
    path = save(tmp_path / "matmul.onnx", nodes, [value("a", [2, 3, 5, 7]), value("v", [7])],
                [value("y", None), value("yv", None)], (weight("b", (3, 7, 4)),))
    assert onnx_flops(path) == FlopCount(total=2 * (2 * 3 * 5 * 4 * 7 + 3 * 4 * 7), winograd_eligible=0)


def test_conv_transpose_counts_as_flop_counter_mode_does(tmp_path):
    module = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], group=2)
    path = save(tmp_path / "deconv.onnx", [node], [value("x", [1, 4, 8, 8])], [value("y", None)],
                (weight("w", tuple(module.weight.shape)),))
    assert onnx_flops(path) == FlopCount(total=2 * 4 * 3 * 3 * 3 * 8 * 8, winograd_eligible=0)
    assert onnx_flops(path).total == torch_flops(module, (1, 4, 8, 8))


def test_integer_convolutions_and_products_count_but_are_not_winograd(tmp_path):
    u8 = TensorProto.UINT8
    scalars = tuple(numpy_helper.from_array(np.array(v, dtype), name)
                    for v, dtype, name in ((0.1, np.float32, "s"), (0, np.uint8, "zu"), (0, np.int8, "zi")))
    nodes = [helper.make_node("QLinearConv", ["x", "s", "zu", "w", "s", "zi", "s", "zu"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("ConvInteger", ["x", "w"], ["yi"], pads=[1, 1, 1, 1]),
             helper.make_node("MatMulInteger", ["a", "b"], ["m"]),
             helper.make_node("QLinearMatMul", ["a", "s", "zu", "b", "s", "zi", "s", "zu"], ["q"])]
    path = save(tmp_path / "int8.onnx", nodes, [value("x", [1, 3, 32, 32], u8), value("a", [4, 16], u8)],
                [value("y", None, u8), value("yi", None, TensorProto.INT32), value("m", None, TensorProto.INT32),
                 value("q", None, u8)],
                (weight("w", (8, 3, 3, 3), np.int8), weight("b", (16, 10), np.int8), *scalars))
    assert onnx_flops(path) == FlopCount(total=2 * (2 * 8 * 32 * 32 * 3 * 9 + 2 * 4 * 16 * 10), winograd_eligible=0)


def test_symbolic_batch_is_unknown_unless_fixed(tmp_path):
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    path = save(tmp_path / "dynamic.onnx", [node], [value("x", ["N", 3, 32, 32])], [value("y", ["N", 8, 32, 32])],
                (weight("w", (8, 3, 3, 3)),))
    assert onnx_flops(path) is None
    direct = 2 * 8 * 32 * 32 * 3 * 9
    assert onnx_flops(path, input_shapes={"x": (2, 3, 32, 32)}) == FlopCount(2 * direct, 2 * direct)


def test_unknown_shape_gives_none(tmp_path):
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    path = save(tmp_path / "unranked.onnx", [node], [value("a", None)], [value("y", None)], (weight("b", (7, 4)),))
    assert onnx_flops(path) is None


def test_products_inside_control_flow_give_none(tmp_path):
    branch = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["t"])], "branch", [], [value("t", [4, 4])])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    path = save(tmp_path / "if.onnx", [node], [value("cond", [], TensorProto.BOOL), value("a", [4, 7])],
                [value("y", None)], (weight("b", (7, 4)),))
    assert onnx_flops(path) is None


def test_local_functions_are_inlined(tmp_path):
    block = helper.make_function("local", "Block", ["x", "w"], ["y"],
                                 [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                                  helper.make_node("Relu", ["c"], ["y"])],
                                 [helper.make_opsetid("", 18)])
    node = helper.make_node("Block", ["x", "w"], ["y"], domain="local")
    path = save(tmp_path / "functions.onnx", [node], [value("x", [1, 3, 32, 32])], [value("y", None)],
                (weight("w", (8, 3, 3, 3)),), functions=(block,), extra_opsets=(helper.make_opsetid("local", 1),))
    direct = 2 * 8 * 32 * 32 * 3 * 9
    assert onnx_flops(path) == FlopCount(direct, direct)


def test_unreadable_files_give_none(tmp_path):
    good = conv_model(tmp_path / "good.onnx").read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.onnx").write_bytes(b"\xff\xfe not a model \x00" * 10)
    for name in ("truncated.onnx", "garbage.onnx", "missing.onnx"):
        assert onnx_flops(tmp_path / name) is None, name
    assert onnx_flops(tmp_path) is None  # a directory


def test_external_data_is_not_needed(tmp_path):
    model = onnx.load(str(conv_model(tmp_path / "inline.onnx", cin=3)))
    onnx.save_model(model, str(tmp_path / "external.onnx"), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    (tmp_path / "weights.bin").unlink()  # only the weights' dims are read, and those are in the graph
    direct = 2 * 8 * 32 * 32 * 3 * 9
    assert onnx_flops(tmp_path / "external.onnx") == FlopCount(direct, direct)


def test_file_based_shape_inference_for_large_models(tmp_path, monkeypatch):
    """Models too large to serialize in memory go through infer_shapes_path; forced here with a zero limit."""
    monkeypatch.setattr(flops, "_PROTOBUF_LIMIT", 0)
    direct = 2 * 8 * 32 * 32 * 3 * 9
    assert onnx_flops(conv_model(tmp_path / "conv.onnx", cin=3)) == FlopCount(direct, direct)


@pytest.mark.parametrize("kwargs, valid_per_dim", [
    ({}, 10),  # 4 outputs x 3 taps, padding 1: the edge outputs lose one tap each
    ({"pads": [0, 0, 0, 0]}, None),  # no padding: 2 outputs x 3 taps, all inside
    ({"pads": [1, 1, 1, 1], "strides": [2, 2]}, 5),  # outputs 0 and 1 of a 4-wide map at stride 2: 2 + 3 taps
    ({"pads": [2, 2, 2, 2], "dilations": [2, 2]}, 8),  # taps 2 apart: the edge outputs lose one each
    ({"auto_pad": "SAME_UPPER"}, None),  # padding not spelled out: not counted
])
def test_taps_on_padding_are_counted_apart(tmp_path, kwargs, valid_per_dim):
    count = onnx_flops(conv_model(tmp_path / "conv.onnx", hw=(4, 4), cin=4, cout=8, **kwargs))
    macs = count.total // 2
    if valid_per_dim is None:
        assert count.padding == 0 and padding_allowance(count) == 1.0
    else:
        valid = 8 * 4 * valid_per_dim**2
        assert count.padding == 2 * (macs - valid)
        assert padding_allowance(count) == pytest.approx(macs / valid)


def test_winograd_allowance():
    share = winograd.MULTIPLY_SHARE
    assert winograd_allowance(FlopCount(100, 0)) == 1.0
    assert winograd_allowance(FlopCount(0, 0)) == 1.0
    assert winograd_allowance(FlopCount(100, 100)) == pytest.approx(1 / share)
    assert winograd_allowance(FlopCount(100, 50)) == pytest.approx(1 / (1 - 0.5 * (1 - share)))


class Small(torch.nn.Module):
    """3x3 stride 1 on 32x32 (Winograd-eligible), 3x3 stride 2 (direct), then a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.b(torch.relu(self.a(x)))).flatten(1))


def test_exported_module_matches_flop_counter_mode(tmp_path, monkeypatch):
    torch.manual_seed(0)
    shape = (1, 3, 32, 32)
    count = onnx_flops(exported(Small(), shape, "small", tmp_path, monkeypatch))
    assert count is not None
    assert count.total == torch_flops(Small(), shape)
    assert count.winograd_eligible == 2 * 8 * 32 * 32 * 3 * 9  # conv a only


def test_resnet18_matches_flop_counter_mode(tmp_path, monkeypatch):
    import torchvision

    torch.manual_seed(0)
    shape = (1, 3, 224, 224)
    model = torchvision.models.resnet18(weights=None)
    count = onnx_flops(exported(model, shape, "resnet18", tmp_path, monkeypatch))
    assert count is not None
    assert count.total == torch_flops(model, shape)
    assert count.total == pytest.approx(3.63e9, rel=0.01)
    # Rewritten: layer1's four 3x3 convolutions on 56x56 and layer2's three stride-1 ones on 28x28; layer2's
    # stride-2 one, layer3 (14x14) and layer4 (7x7) stay direct.
    assert count.winograd_eligible == 2 * (4 * 64 * 64 * 9 * 56 * 56 + 3 * 128 * 128 * 9 * 28 * 28)
    print(f"resnet18: {count.total:.4g} FLOPs, Winograd-eligible {count.winograd_eligible:.4g} "
          f"({count.winograd_share:.1%}), allowance {winograd_allowance(count):.3f}")
