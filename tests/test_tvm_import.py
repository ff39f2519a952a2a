"""The TVM import path: ReLU6 (ONNX Clip) must convert to NHWC and fuse, and results must match PyTorch."""

from __future__ import annotations

import numpy as np
import torch

from cpubench import tvm_support as tv
from cpubench.models import BuiltModel
from cpubench.onnx_export import export_onnx


class ConvReLU6(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.act = torch.nn.ReLU6()

    def forward(self, x):
        return self.act(self.conv(x)).mean(dim=(2, 3))


def test_relu6_fuses_into_the_convolution(tmp_path, monkeypatch):
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path))
    torch.manual_seed(0)
    model = BuiltModel("relu6", ConvReLU6().eval(), "seeded", "relu6", (1, 3, 8, 8))
    onnx_path = export_onnx(model)
    target = tv.host_target(1)
    lowered = tv.lower_for_tuning(tv.import_onnx(onnx_path, model.input_shape), target)
    names = tv.tunable_functions(lowered)
    assert any("conv2d" in n and "maximum" in n and "minimum" in n for n in names), names
    assert not [n for n in names if "transpose" in n and ("maximum" in n or "clip" in n)], names

    lib = tmp_path / "relu6.so"
    tv.compile_module(tv.import_onnx(onnx_path, model.input_shape), target, lib)
    x = np.random.default_rng(0).standard_normal(model.input_shape).astype("float32") * 4
    import tvm

    got = tv.to_numpy(tv.load_vm(lib)["main"](tvm.runtime.tensor(x)))
    expected = model.module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
