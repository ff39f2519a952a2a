"""Versions of the runtimes, recorded with every number."""

from __future__ import annotations

from importlib import metadata

PACKAGES = ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "executorch", "ai-edge-litert", "litert-torch",
            "timm", "apache-tvm", "apache-tvm-ffi", "numpy", "pytest", "pytest-benchmark")


def backend_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
