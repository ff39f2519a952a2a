"""A tiny convolutional model that tunes in seconds: the suite's tuning machinery tested end to end."""

from __future__ import annotations

from pathlib import Path

import torch

from cpubench import tvm_support as tv
from cpubench.models import BuiltModel
from cpubench.onnx_export import export_onnx

TINY_SHAPE = (1, 3, 28, 28)  # 28x28: its 3x3 convolution is large enough for the Winograd lowering


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def tiny_model() -> BuiltModel:
    torch.manual_seed(0)
    return BuiltModel("tiny", Tiny().eval(), "seeded", "tiny-seed0", TINY_SHAPE)


def tiny_relax(onnx_path: Path | None = None):
    return tv.import_onnx(onnx_path or export_onnx(tiny_model()), TINY_SHAPE)
