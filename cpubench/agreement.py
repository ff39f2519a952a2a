"""Do the backends agree? Top-1 class and logits of every variant against the reference, with tolerances per
precision, and the near-tie rule: when the reference's two best classes are closer than the tolerance, which
comes first is luck of re-association, so the logits decide instead."""

from __future__ import annotations

from typing import Any

import numpy as np

from .images import describe_class

# Logits may differ by float32 re-association (fused, re-tiled or re-ordered sums), never by more than this
# fraction of the reference logits' largest magnitude. Measured differences here are ~1e-5 of it.
LOGIT_TOLERANCE = 1e-3
# bfloat16 keeps 8 significant bits: every weight and activation is rounded by up to 2^-9 (0.2%) of itself, and
# the rounding of ~20 layers adds up (products accumulate in float32 on AMX and AVX512-BF16, so sums do not
# add more). Measured on a Xeon with AMX: 4e-3 (ResNet18) and 1e-2 (EfficientNet-Lite0) of the largest logit.
# 5e-2 leaves room for other CPUs and kernels; a wrong kernel is off by the size of the logits themselves.
# int8 rounds every weight to one of 255 steps of its channel's range and every activation to one of 256 steps of
# its calibrated range. Measured: 3e-2 to 1.1e-1 of the largest logit on the default photos (ResNet18,
# EfficientNet-Lite0; Xeon, Zen 3), up to 0.22 on EfficientNet-Lite0's evaluation images (Xeon).
# What int8 must keep is the answer, judged on the evaluation set (see INT8_MIN_AGREEMENT).
REDUCED_PRECISION_TOLERANCE = {"bf16": 5e-2, "int8": 0.3}
# An int8 variant must give the float32 reference's top-1 on at least this share of the evaluation images whose
# reference top-2 margin is clear (not a near-tie under the int8 tolerance). It fails when its count is too low for
# that: an exact one-sided binomial test, under INT8_SIGNIFICANCE. With 36 judged images a point threshold of 97%
# would fail a variant that truly agrees on 98% of images one time in six (two misses). With the 60-65 judged images
# of today's seven evaluation photos the test fails at 5 misses or more: a variant that truly agrees on 90% of images
# three times in four, one on 80% (ONNX Runtime's U8S8 on an AVX2 CPU: 29/36 on the four photos of then) every
# time (docs/design.md#same-answer-or-the-run-fails).
INT8_MIN_AGREEMENT = 0.97
INT8_SIGNIFICANCE = 0.05
# For int8's agreement rate a near-tie is a reference top-2 margin under this share of the largest logit: about
# the int8 logits' typical (not worst) distance from float32.
INT8_NEAR_TIE = 0.05
# The reference every other variant is compared with: the model as written, else ONNX Runtime (onnx: files).
REFERENCES = ("torch", "onnxruntime")


def tolerance(precision: str) -> float:
    return LOGIT_TOLERANCE if precision == "fp32" else REDUCED_PRECISION_TOLERANCE[precision]


def precision_of(backend: Any) -> str:
    return backend.info.get("precision", "fp32")


def reference_of(loaded: dict[str, Any]) -> str:
    """torch, else onnxruntime, else the first float32 variant that ran (a reduced precision only if nothing else)."""
    fp32 = [name for name, backend in loaded.items() if precision_of(backend) == "fp32"]
    return next((name for name in REFERENCES if name in loaded), next(iter(fp32 or loaded)))


def top2_margin(logits: np.ndarray) -> float:
    first, second = np.sort(logits)[-2:][::-1]
    return float(first - second)


def compare_top1(reference_name: str, loaded: dict[str, Any]) -> tuple[list[str], list[str], float]:
    """(disagreements as text, variants judged by their logits because of a near-tie, the reference's margin)."""
    reference = loaded[reference_name]
    classes = reference.classes
    scale = float(np.abs(reference.logits).max())
    margin = top2_margin(reference.logits)
    disagree, ties = [], []
    for name, backend in loaded.items():
        if name == reference_name:
            continue
        if backend.classes != classes:
            disagree.append(f"{name} returns {backend.classes} classes, {reference_name} {classes}")
            continue
        allowed = tolerance(precision_of(backend)) * scale
        if margin < near_tie_margin(precision_of(backend)) * scale:
            ties.append(name)
            worst = float(np.abs(backend.logits - reference.logits).max())
            if worst > allowed:
                disagree.append(f"{name} ({precision_of(backend)}): near-tie on the reference's top-2, and its logits "
                                f"differ by {worst:.3g} > {allowed:.3g}")
        elif backend.top1 != reference.top1:
            disagree.append(f"{name} ({precision_of(backend)}) says {describe_class(backend.top1, classes)}")
    return disagree, ties, margin


def compare_logits(reference_name: str, loaded: dict[str, Any]) -> list[str]:
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
    return failures


def agreement_rate(reference: np.ndarray, candidate: np.ndarray, precision: str) -> dict[str, Any]:
    """How often `candidate`'s top-1 equals `reference`'s over a set of images (rows of logits). Images whose
    reference top-2 margin is under the precision's near-tie tolerance are counted apart: there, which class comes
    first is not the model's answer but rounding."""
    if reference.shape != candidate.shape:
        raise ValueError(f"logits of shape {candidate.shape}, reference {reference.shape}")
    ordered = np.sort(reference, axis=1)
    margins = ordered[:, -1] - ordered[:, -2]
    clear = margins >= near_tie_margin(precision) * np.abs(reference).max(axis=1)
    same = np.argmax(reference, axis=1) == np.argmax(candidate, axis=1)
    judged = int(clear.sum())
    agree = int((same & clear).sum())
    return {"images": int(reference.shape[0]), "judged": judged, "agree": agree,
            "near_ties": int(reference.shape[0]) - judged, "agree_incl_near_ties": int(same.sum()),
            "rate": agree / judged if judged else None}


def binomial_at_most(successes: int, trials: int, p: float) -> float:
    """P(X <= successes) for X ~ Binomial(trials, p): exact."""
    from math import comb

    return sum(comb(trials, k) * p ** k * (1 - p) ** (trials - k) for k in range(successes + 1))


def agreement_p_value(rate: dict[str, Any]) -> float | None:
    """How likely so few agreements would be if the variant truly agreed on INT8_MIN_AGREEMENT of the images
    (agreement_rate's counts); under INT8_SIGNIFICANCE it fails. None when nothing was judged."""
    if not rate["judged"]:
        return None
    return binomial_at_most(rate["agree"], rate["judged"], INT8_MIN_AGREEMENT)


def near_tie_margin(precision: str) -> float:
    """A reference top-2 margin under this fraction of its largest logit is a near-tie for `precision`."""
    return INT8_NEAR_TIE if precision == "int8" else tolerance(precision)
