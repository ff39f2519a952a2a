"""Model sources: torchvision:NAME, timm:NAME, onnx:PATH; bad names and files; output shapes; the near-tie rule."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import TINY_SHAPE

from cpubench.agreement import compare_top1
from cpubench.errors import UsageError
from cpubench.models import BuiltModel, build_model, check_output, disk_key_of, parse_spec


def test_torchvision_model_is_seeded_and_takes_its_transforms_size():
    a, b = build_model("torchvision:squeezenet1_1"), build_model("torchvision:squeezenet1_1")
    assert a.weights_digest == b.weights_digest and "seeded" in a.weights_source
    assert a.input_shape == (1, 3, 224, 224) and a.key == "torchvision-squeezenet1_1"
    assert build_model("torchvision:inception_v3").input_shape == (1, 3, 299, 299)
    assert build_model("torchvision:squeezenet1_1", input_size=(160, 128)).input_shape == (1, 3, 160, 128)


def test_weights_load_into_any_torch_model(tmp_path):
    import torchvision

    torch.manual_seed(5)
    checkpoint = tmp_path / "squeeze.pth"
    torch.save(torchvision.models.squeezenet1_1().state_dict(), checkpoint)
    model = build_model("torchvision:squeezenet1_1", weights=checkpoint)
    assert model.weights_source == "checkpoint squeeze.pth"
    with pytest.raises(UsageError, match=r"--weights: .*squeeze.pth does not fit timm's resnet10t"):
        build_model("timm:resnet10t", weights=checkpoint)


def test_timm_model_takes_its_config():
    model = build_model("timm:resnet10t")
    assert model.input_shape == (1, 3, 224, 224) and model.key == "timm-resnet10t" and "seeded" in model.weights_source


def test_onnx_file_is_used_as_is(tiny_onnx):
    model = build_model(f"onnx:{tiny_onnx}")
    assert model.module is None and model.onnx_file == tiny_onnx.resolve()
    assert model.input_shape == TINY_SHAPE and model.input_name == "input"
    assert model.key == disk_key_of(f"onnx:{tiny_onnx}") and model.weights_digest in model.key
    assert parse_spec(f"onnx:{tiny_onnx}").test_id == f"onnx:{tiny_onnx.stem}"


def test_edited_onnx_file_gets_another_key(tiny_onnx, tmp_path):
    import onnx

    proto = onnx.load(str(tiny_onnx))
    copy = tmp_path / tiny_onnx.name
    onnx.save(proto, str(copy))
    assert disk_key_of(f"onnx:{copy}") == disk_key_of(f"onnx:{tiny_onnx}")
    proto.graph.initializer[0].raw_data = bytes(len(proto.graph.initializer[0].raw_data))
    onnx.save(proto, str(copy))
    assert disk_key_of(f"onnx:{copy}") != disk_key_of(f"onnx:{tiny_onnx}")


def test_symbolic_onnx_input_needs_input_size(tmp_path):
    from tiny import Tiny

    path = tmp_path / "dyn.onnx"
    torch.onnx.export(Tiny().eval(), (torch.zeros(1, 3, 16, 16),), str(path), input_names=["x"], dynamo=False,
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    with pytest.raises(UsageError, match=r"symbolic height/width .*give --input-size"):
        build_model(f"onnx:{path}")
    assert build_model(f"onnx:{path}", input_size=(32, 32)).input_shape == (1, 3, 32, 32)


@pytest.mark.parametrize(("spec", "expected"), [
    ("resnet81", r"unknown model 'resnet81'; closest names: resnet18"),
    ("torchvision:resnt18", r"no classification model 'resnt18'; closest torchvision names: .*resnet18"),
    ("timm:resnet10", r"timm has no architecture 'resnet10'; closest timm names: .*resnet10t"),
    ("onnx:no/such.onnx", r"--models onnx:no/such.onnx: no such file"),
])
def test_bad_names_fail_with_the_closest(spec, expected):
    with pytest.raises(UsageError, match=expected):
        build_model(spec)


def test_unreadable_onnx_file_names_it(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(UsageError, match=rf"--models onnx:{bad}: not a readable ONNX file"):
        build_model(f"onnx:{bad}")


def test_wrong_output_shape_names_model_and_shape():
    class FeatureMap(torch.nn.Module):
        def forward(self, x):
            return x

    model = BuiltModel("features", FeatureMap(), "seeded", "x", (1, 3, 8, 8))
    with pytest.raises(UsageError, match=r"features returned output of shape \(1, 3, 8, 8\); .*\(batch, classes\)"):
        check_output(model)


@dataclass
class Answer:
    logits: np.ndarray
    info: dict = field(default_factory=lambda: {"precision": "fp32"})

    @property
    def top1(self) -> int:
        return int(np.argmax(self.logits))

    @property
    def classes(self) -> int:
        return self.logits.size


def test_near_tie_is_judged_by_the_logits():
    reference = Answer(np.array([10.0, 9.9995, 1.0, -3.0]))  # top-2 margin 5e-4 < 1e-3 x 10
    flipped = Answer(np.array([9.9996, 10.0, 1.0, -3.0]))  # other top-1, logits within tolerance
    disagree, ties, margin = compare_top1("torch", {"torch": reference, "onnxruntime": flipped})
    assert disagree == [] and ties == ["onnxruntime"] and margin == pytest.approx(5e-4)
    wrong = Answer(np.array([9.0, 10.0, 1.0, -3.0]))  # a near-tie does not excuse logits that are off
    disagree, ties, _ = compare_top1("torch", {"torch": reference, "onnxruntime": wrong})
    assert ties == ["onnxruntime"] and "near-tie" in disagree[0]


def test_clear_winner_must_match():
    reference = Answer(np.array([10.0, 5.0, 1.0]))
    other = Answer(np.array([5.0, 10.0, 1.0]))
    disagree, ties, _ = compare_top1("torch", {"torch": reference, "openvino": other})
    assert ties == [] and disagree == ["openvino (fp32) says 1"]  # not 1000 classes: the index only


def test_class_count_mismatch_is_named():
    disagree, _, _ = compare_top1("torch", {"torch": Answer(np.arange(5.0)), "tvm": Answer(np.arange(4.0))})
    assert disagree == ["tvm returns 4 classes, torch 5"]


def test_model_ids_are_readable():
    assert parse_spec("timm:resnet10t").test_id == "timm:resnet10t"
    assert parse_spec(f"onnx:{Path('a/b/net.onnx')}").test_id == "onnx:net"
