"""int8: static quantization of the suite's ONNX export, and the photos it is calibrated and judged on.

One quantized model for every ONNX-based runtime: ONNX Runtime's `quantize_static` in QDQ form (QuantizeLinear /
DequantizeLinear pairs around each quantizable operator), per-channel weights and uint8 activations, ranges calibrated
(MinMax) on the calibration set: ONNX Runtime's guidance for x86 CPUs. The weights' type follows the CPU:
- with an 8-bit dot-product instruction (VNNI, AVX-VNNI or AMX), int8 weights (U8S8), the fast and exact path;
- without one (AVX2 CPUs such as AMD Zen 3), uint8 weights (U8U8). There, uint8 x int8 kernels multiply with
  `vpmaddubsw`, which saturates the sum of two products at int16, so the same U8S8 file gives other answers than on a
  VNNI CPU (OpenVINO's documentation calls it the saturation issue; ONNX Runtime's quantization guide prescribes
  `reduce_range` or U8U8 for it). Measured on an AMD EPYC Zen 3, EfficientNet-Lite0 against float32 on 36 evaluation
  images: U8S8 29/36 in ONNX Runtime and 26/36 in OpenVINO (36/36 for both on VNNI CPUs), 7-bit weights
  (`reduce_range`) 22/36 and 23/36, U8U8 36/36 in both, at a cost in speed that the run then measures
  (docs/int8_without_vnni/). ResNet18 kept 32/32 with every format.
The row names the format and why (`quantization_weights`, `cpu_int8_dot_product`). ONNX Runtime and OpenVINO run the
same file, so their int8 rows compare runtimes, not quantizers.

Calibration and evaluation use different photos (fixtures/calibration/, fixtures/evaluation/ plus the two default
photos; sources and licences in fixtures/PHOTOS.md), each taken through the same deterministic crops and flips.
Quantizing is build time: never timed, its duration recorded, its output cached under a key of everything it
depends on and checked like every other cached build.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cache import atomic_write_bytes, cached_path, content_key, usable_entry, write_entry
from .images import FIXTURES, make_batch
from .machine import cpu_flags
from .models import BuiltModel

CALIBRATION_PHOTOS = tuple(sorted((FIXTURES / "calibration").glob("*.jpg")))
EVALUATION_PHOTOS = (FIXTURES / "chelsea.png", FIXTURES / "coffee.png",
                     *sorted((FIXTURES / "evaluation").glob("*.jpg")))
# (left, top, side) as fractions of the photo: the whole photo squeezed, a centre crop, then corner crops.
CROPS = ((0.0, 0.0, None), (0.125, 0.125, 0.75), (0.0, 0.0, 0.8), (0.2, 0.2, 0.8), (0.0, 0.2, 0.8), (0.2, 0.0, 0.8))
CALIBRATION_VIEWS = 4  # per calibration photo: the first crops, every other one mirrored
EVALUATION_VIEWS = 12  # per evaluation photo: every crop, as is and mirrored
# CPU flags (/proc/cpuinfo) of 8-bit dot-product instructions: int8 is fastest with them, and runs without them.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
QUANTIZER_SETTINGS = {"format": "QDQ", "activations": "uint8 (asymmetric)", "calibration": "MinMax"}


def int8_dot_product(flags: frozenset[str] | None = None) -> str:
    """The CPU's 8-bit dot-product instructions (/proc/cpuinfo flags), or "" where it has none."""
    flags = cpu_flags() if flags is None else flags
    return " ".join(f for f in VNNI_FLAGS if f in flags)


def weight_format(flags: frozenset[str] | None = None) -> str:
    """"int8" (U8S8) on a CPU with an 8-bit dot product, else "uint8" (U8U8), which no uint8 x int8 kernel
    saturates (module docstring)."""
    return "int8" if int8_dot_product(flags) else "uint8"


def views(path: Path, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...], channels: int,
          count: int) -> list[np.ndarray]:
    """`count` deterministic views of the photo (crops of CROPS, mirrored or not), each (channels, H, W) float32,
    normalised like the photo of the run."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
    width, height = rgb.size
    out = []
    for index in range(count):
        left, top, side = CROPS[(index // 2 if count > len(CROPS) else index) % len(CROPS)]
        mirrored = index % 2 == 1
        if side is None:
            box = (0, 0, width, height)
        else:
            edge = side * min(width, height)
            x0, y0 = left * (width - edge) / max(1e-9, 1 - side), top * (height - edge) / max(1e-9, 1 - side)
            box = (round(x0), round(y0), round(x0 + edge), round(y0 + edge))
        view = rgb.crop(box).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        if mirrored:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = np.asarray(view, dtype=np.float32) / 255.0
        array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        if channels == 1:
            array = array.mean(axis=2, keepdims=True)
        out.append(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))
    return out


def image_set(model: BuiltModel, photos: tuple[Path, ...], per_photo: int) -> np.ndarray:
    """(N, C, H, W) float32: `per_photo` views of each photo, as the model wants them."""
    _, channels, height, width = model.input_shape
    arrays = [v for p in photos for v in views(p, (height, width), model.mean, model.std, channels, per_photo)]
    return np.stack(arrays)


def calibration_set(model: BuiltModel) -> np.ndarray:
    return image_set(model, CALIBRATION_PHOTOS, CALIBRATION_VIEWS)


def evaluation_set(model: BuiltModel) -> np.ndarray:
    return image_set(model, EVALUATION_PHOTOS, EVALUATION_VIEWS)


@dataclass
class QuantizedModel:
    path: Path
    info: dict[str, Any] = field(default_factory=dict)


def quantize_onnx(model: BuiltModel, onnx_path: Path, calibration: np.ndarray,
                  weights: str | None = None) -> QuantizedModel:
    """The QDQ int8 model of `onnx_path`, from the cache when an intact one was made from the same file, photos,
    settings and quantizer version; otherwise quantized now (and the time it took recorded)."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    source_digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()[:16]
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    calibration_digest = hashlib.sha256(calibration.tobytes()).hexdigest()[:16]
    weights = weights or weight_format()
    if weights not in ("int8", "uint8"):
        raise ValueError(f"int8 weights are int8 or uint8, not {weights!r}")
    key = content_key(source=source_digest, calibration_set=calibration_digest, ort=onnxruntime.__version__,
                      weights=weights, **QUANTIZER_SETTINGS)
    path = cached_path("int8", f"{model.disk_key}-{key}", ".onnx")
    info: dict[str, Any] = {
        "quantizer": f"onnxruntime.quantization.quantize_static {onnxruntime.__version__}",
        **{f"quantization_{k}": v for k, v in QUANTIZER_SETTINGS.items()},
        "quantization_weights": (f"{weights} per channel (U8S8)" if weights == "int8" else
                                 f"{weights} per channel (U8U8: uint8 x int8 kernels without VNNI saturate)"),
        "cpu_int8_dot_product": int8_dot_product() or "none (no VNNI or AMX)",
        "calibration_images": int(calibration.shape[0]),
        "calibration_photos": [p.name for p in CALIBRATION_PHOTOS],
        "quantized_model": path.name,
    }
    took = path.with_name(path.name + ".seconds")  # how long quantizing it took, kept beside the cached file
    if usable_entry(path):  # a damaged file is discarded and quantized again
        try:
            info["quantize_seconds"] = float(took.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info["quantize_seconds"] = None  # the model is intact; only the note of its duration is gone
        info["quantized_from_cache"] = True
        return QuantizedModel(path, info)
    input_name = model.input_name
    batch = model.input_shape[0]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._items, None)
            return None if item is None else {input_name: make_batch(item, batch)}

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        out = Path(scratch) / "model.onnx"
        import logging

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its "consider pre-processing" advice is a warning on every call
        try:
            quantize_static(str(onnx_path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8 if weights == "int8" else QuantType.QUInt8)
        finally:
            root.setLevel(level)
        write_entry(path, out.read_bytes())
    info["quantize_seconds"] = round(time.perf_counter() - started, 2)
    info["quantized_from_cache"] = False
    atomic_write_bytes(took, str(info["quantize_seconds"]).encode())
    return QuantizedModel(path, info)
