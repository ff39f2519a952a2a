"""Every backend, in every precision that ran, must give the same answer on the photo as the reference: PyTorch
in float32, the model as written (ONNX Runtime for an onnx: file)."""

from __future__ import annotations

import numpy as np
import pytest

from cpubench.backends import BackendUnavailable
from cpubench.errors import UsageError
from cpubench.images import CAT_CLASSES, describe_class
from cpubench.plugin import VERDICT_MARKER

# Verdicts run after every benchmark (cpubench/plugin.py); these build what they compare themselves, so their
# answer does not depend on order either.
pytestmark = getattr(pytest.mark, VERDICT_MARKER)

# Logits may differ by float32 re-association (fused, re-tiled or re-ordered sums), never by more than this
# fraction of the reference logits' largest magnitude. Measured differences here are ~1e-5 of it.
LOGIT_TOLERANCE = 1e-3
# bfloat16 keeps 8 significant bits: every weight and activation is rounded by up to 2^-9 (0.2%) of itself, and
# the rounding of ~20 layers adds up (products accumulate in float32 on AMX and AVX512-BF16, so sums do not
# add more). Measured on a Xeon with AMX: 4e-3 (ResNet18) and 1e-2 (EfficientNet-Lite0) of the largest logit.
# 5e-2 leaves room for other CPUs and kernels; a wrong kernel is off by the size of the logits themselves.
REDUCED_PRECISION_TOLERANCE = {"bf16": 5e-2}


def tolerance(precision: str) -> float:
    return LOGIT_TOLERANCE if precision == "fp32" else REDUCED_PRECISION_TOLERANCE[precision]


def loaded_backends(suite, model_name):
    loaded, skipped = {}, {}
    for backend in suite.settings.variants:
        try:
            loaded[backend] = suite.loaded(model_name, backend)
        except BackendUnavailable as exc:
            skipped[backend] = str(exc)
        except UsageError as exc:
            pytest.fail(f"{model_name}-{backend}: {exc}", pytrace=False)
    return loaded, skipped


# The reference every other variant is compared with: the model as written, else ONNX Runtime (for onnx: files).
REFERENCES = ("torch", "onnxruntime")


def reference_of(loaded: dict) -> str:
    return next((name for name in REFERENCES if name in loaded), next(iter(loaded)))


def precision_of(backend) -> str:
    return backend.info.get("precision", "fp32")


def test_same_top1(suite, model_name):
    loaded, skipped = loaded_backends(suite, model_name)
    if not loaded:
        pytest.skip(f"no backend could run {model_name}: {skipped}")
    reference_name = reference_of(loaded)
    reference = loaded[reference_name]
    classes = reference.classes
    scale = float(np.abs(reference.logits).max())
    first, second = np.sort(reference.logits)[-2:][::-1]
    margin = float(first - second)
    disagree, ties = [], []
    for name, backend in loaded.items():
        if backend.classes != classes:
            disagree.append(f"{name} returns {backend.classes} classes, {reference_name} {classes}")
            continue
        allowed = tolerance(precision_of(backend)) * scale
        if name != reference_name and margin < allowed:
            # A near-tie: the two best classes are closer than the differences this precision allows, so which one
            # comes first is luck. The logits decide instead: within tolerance of the reference's, everywhere.
            worst = float(np.abs(backend.logits - reference.logits).max())
            ties.append(name)
            if worst > allowed:
                disagree.append(f"{name} ({precision_of(backend)}): near-tie on the reference's top-2, and its logits "
                                f"differ by {worst:.3g} > {allowed:.3g}")
        elif backend.top1 != reference.top1:
            disagree.append(f"{name} ({precision_of(backend)}) says {describe_class(backend.top1, classes)}")
    if ties:
        suite.verdicts.append(f"{model_name} top-1: tie ({reference_name}'s two best classes are "
                              f"{margin:.3g} apart, under the logit tolerance); compared logits instead for "
                              f"{', '.join(ties)}")
    assert not disagree, (f"{model_name}: {reference_name} (fp32) says {describe_class(reference.top1, classes)}, but "
                          + "; ".join(disagree))
    if model_name == "efficientnet_lite0" and suite.default_image:
        # Real ImageNet weights on the shipped cat photo: a non-cat answer means broken preprocessing or export.
        assert reference.top1 in CAT_CLASSES, (
            f"efficientnet_lite0 on {suite.image_path.name}: expected a cat class (281-285), "
            f"got {describe_class(reference.top1)}")
    if len(loaded) < 2:
        pytest.skip(f"only {reference_name} ran for {model_name}; nothing to compare it with")


def test_logits_match_reference(suite, model_name):
    loaded, _ = loaded_backends(suite, model_name)
    if len(loaded) < 2:
        pytest.skip(f"needs two backends for {model_name}; ran: {', '.join(loaded) or 'none'}")
    reference_name = reference_of(loaded)
    reference = loaded[reference_name].logits
    scale = float(np.abs(reference).max())
    failures = []
    for name, backend in loaded.items():
        if backend.logits.shape != reference.shape:
            failures.append(f"{name}: logits of shape {backend.logits.shape}, {reference_name} {reference.shape}")
            continue
        precision = precision_of(backend)
        worst = float(np.abs(backend.logits - reference).max())
        if worst > tolerance(precision) * scale:
            failures.append(f"{name} ({precision}): max |logit - {reference_name} fp32| = {worst:.3g} > "
                            f"{tolerance(precision)} x {scale:.3g}")
    assert not failures, f"{model_name}: " + "; ".join(failures)
