"""Photo loading and preprocessing as in the blog post: 224x224 resize, ImageNet mean/std, NCHW float32."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import UsageError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DEFAULT_IMAGE = FIXTURES / "chelsea.png"
CLASSES_FILE = FIXTURES / "imagenet_classes.txt"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def load_image(path: Path, size: int = 224) -> np.ndarray:
    """Return the photo at `path` as a (1, 3, size, size) float32 array, normalised with ImageNet statistics."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--image: no such file: {path}")
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UsageError(f"--image: {path} is not a readable image ({exc})") from None
    array = np.asarray(rgb, dtype=np.float32) / 255.0
    array = (array - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(array.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)


def make_batch(image: np.ndarray, batch_size: int) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(image, batch_size, axis=0))


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    names = tuple(CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:
        raise UsageError(f"{CLASSES_FILE} should list 1000 ImageNet classes, found {len(names)}")
    return names


def describe_class(index: int) -> str:
    return f"{index} {class_names()[index]}"
