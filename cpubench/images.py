"""Photo loading and preprocessing as in the blog post: 224x224 resize, ImageNet mean/std, NCHW float32."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import UsageError
from .models import IMAGENET_MEAN, IMAGENET_STD

# cpubench/fixtures links to the top-level fixtures/ in a checkout and is package data in a wheel.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEFAULT_IMAGE = FIXTURES / "chelsea.png"
CLASSES_FILE = FIXTURES / "imagenet_classes.txt"
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def load_image(path: Path, size: int | tuple[int, int] = 224, mean: tuple[float, ...] = IMAGENET_MEAN,
               std: tuple[float, ...] = IMAGENET_STD, channels: int = 3) -> np.ndarray:
    """Return the photo at `path` as a (1, channels, height, width) float32 array, resized to `size` and normalised
    with `mean` and `std` (ImageNet's by default) on RGB values in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--image: no such file: {path}")
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UsageError(f"--image: {path} is not a readable image ({exc})") from None
    array = np.asarray(rgb, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    if channels == 1:  # a grey-scale model: the luminance channel
        array = array.mean(axis=2, keepdims=True)
    return np.ascontiguousarray(array.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)


def make_batch(image: np.ndarray, batch_size: int) -> np.ndarray:
    """`batch_size` copies of one image, given with (1, C, H, W) or without (C, H, W) its batch axis."""
    if image.ndim == 3:
        image = image[np.newaxis]
    return np.ascontiguousarray(np.repeat(image, batch_size, axis=0))


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    names = tuple(CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:
        raise UsageError(f"{CLASSES_FILE} should list 1000 ImageNet classes, found {len(names)}")
    return names


def describe_class(index: int, classes: int = 1000) -> str:
    """`285 Egyptian cat` for a 1000-class (ImageNet) output; the index alone for any other."""
    return f"{index} {class_names()[index]}" if classes == 1000 else str(index)
