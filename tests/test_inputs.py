"""Preprocessing, class names and model weights: the parts every backend shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cpubench.errors import UsageError
from cpubench.images import CAT_CLASSES, DEFAULT_IMAGE, class_names, describe_class, load_image, make_batch
from cpubench.models import RESNET18_SEED, build_model


def test_image_is_nchw_float32_normalised():
    x = load_image(DEFAULT_IMAGE)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    # ImageNet normalisation puts a natural photo's channels roughly around zero, within a few units.
    assert -3 < x.mean() < 3 and x.min() >= -2.2 and x.max() <= 2.7
    assert make_batch(x, 3).shape == (3, 3, 224, 224)


def test_class_names_are_imagenets():
    names = class_names()
    assert len(names) == 1000
    assert describe_class(285) == "285 Egyptian cat"
    assert [names[i] for i in CAT_CLASSES] == ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_text("not a png")
    with pytest.raises(UsageError, match=str(bad)):
        load_image(bad)


def test_seeded_resnet18_is_deterministic_and_says_so():
    a, b = build_model("resnet18"), build_model("resnet18")
    assert a.weights_digest == b.weights_digest
    assert f"seed {RESNET18_SEED}" in a.weights_source and "--weights" in a.weights_source


def test_resnet18_checkpoint_is_loaded(tmp_path):
    import torchvision

    torch.manual_seed(1)
    checkpoint = tmp_path / "resnet18-custom.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), checkpoint)
    model = build_model("resnet18", weights=checkpoint)
    assert model.weights_source == "checkpoint resnet18-custom.pth"
    assert model.weights_digest != build_model("resnet18").weights_digest


def test_wrong_checkpoint_names_the_file(tmp_path):
    checkpoint = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, checkpoint)
    with pytest.raises(UsageError, match=r"does not fit torchvision's resnet18"):
        build_model("resnet18", weights=checkpoint)


def test_efficientnet_has_real_weights_and_sees_a_cat():
    model = build_model("efficientnet_lite0")
    with torch.inference_mode():
        logits = model.module(torch.from_numpy(load_image(DEFAULT_IMAGE)))
    assert int(logits.argmax()) in CAT_CLASSES
