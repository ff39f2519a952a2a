"""Every backend, in every precision that ran, must give the same answer on the photo as the reference: PyTorch
in float32, the model as written (ONNX Runtime for an onnx: file). int8 must also keep the reference's answer on
the evaluation set. Rules and tolerances: cpubench/agreement.py."""

from __future__ import annotations

import pytest

from cpubench.agreement import (
    INT8_MIN_AGREEMENT,
    INT8_NEAR_TIE,
    INT8_SIGNIFICANCE,
    agreement_p_value,
    compare_logits,
    compare_top1,
    reference_of,
)
from cpubench.backends import BackendUnavailable
from cpubench.errors import UsageError
from cpubench.images import CAT_CLASSES, describe_class
from cpubench.plugin import VERDICT_MARKER
from cpubench.precision import Variant
from cpubench.worker import WorkerDied

# Verdicts run after every benchmark (cpubench/plugin.py); these build what they compare themselves, so their
# answer does not depend on order either.
pytestmark = getattr(pytest.mark, VERDICT_MARKER)


def built_variants(suite, model_name):
    built, skipped = {}, {}
    for backend in suite.settings.variants:
        try:
            built[backend] = suite.launcher.build(model_name, backend)
        except (BackendUnavailable, WorkerDied) as exc:  # a dead worker fails its own benchmark, not this check
            skipped[backend] = str(exc)
        except UsageError as exc:
            pytest.fail(f"{model_name}-{backend}: {exc}", pytrace=False)
    if built and all(Variant.parse(name).precision != "fp32" for name in built):
        # Only reduced precisions ran: they are judged against the float32 reference all the same (built, not timed).
        try:
            reference = suite.int8.build_reference(model_name)
            built = {reference: suite.launcher.build(model_name, reference), **built}
        except (BackendUnavailable, WorkerDied, UsageError) as exc:
            skipped["fp32 reference"] = str(exc)
    return built, skipped


def test_same_top1(suite, model_name):
    built, skipped = built_variants(suite, model_name)
    if not built:
        pytest.skip(f"no backend could run {model_name}: {skipped}")
    reference_name = reference_of(built)
    reference = built[reference_name]
    disagree, ties, margin = compare_top1(reference_name, built)
    if ties:
        suite.verdicts.append(f"{model_name} top-1: tie ({reference_name}'s two best classes are {margin:.3g} apart, "
                              f"under the logit tolerance); compared logits instead for {', '.join(ties)}")
    assert not disagree, (f"{model_name}: {reference_name} (fp32) says "
                          f"{describe_class(reference.top1, reference.classes)}, but " + "; ".join(disagree))
    if model_name == "efficientnet_lite0" and suite.store.default_image:
        # Real ImageNet weights on the shipped cat photo: a non-cat answer means broken preprocessing or export.
        assert reference.top1 in CAT_CLASSES, (
            f"efficientnet_lite0 on {suite.store.image_path.name}: expected a cat class (281-285), "
            f"got {describe_class(reference.top1)}")
    if len(built) < 2:
        pytest.skip(f"only {reference_name} ran for {model_name}; nothing to compare it with")


def test_logits_match_reference(suite, model_name):
    built, _ = built_variants(suite, model_name)
    if len(built) < 2:
        pytest.skip(f"needs two backends for {model_name}; ran: {', '.join(built) or 'none'}")
    failures = compare_logits(reference_of(built), built)
    assert not failures, f"{model_name}: " + "; ".join(failures)


def test_int8_keeps_the_answer(suite, model_name):
    """Each int8 variant gives float32's top-1 on INT8_MIN_AGREEMENT of the evaluation images whose reference answer
    is not a near-tie (fixtures/evaluation and the default photos, cropped and mirrored), or fails when its count
    is too low for that (agreement.agreement_p_value under INT8_SIGNIFICANCE)."""
    int8 = [v for v in suite.settings.variants if Variant.parse(v).precision == "int8"]
    if not int8:
        pytest.skip("no int8 variant selected (add int8 to --precision)")
    built, skipped = built_variants(suite, model_name)
    judged, failures = [], []
    for variant in int8:
        if variant not in built:
            continue
        try:
            rate = suite.int8.agreement(model_name, variant)
        except (BackendUnavailable, UsageError, WorkerDied) as exc:
            failures.append(f"{variant}: not judged: {exc}")
            continue
        line = (f"{variant} agrees with {rate['reference']} (fp32) on {rate['agree']}/{rate['judged']} evaluation "
                f"images ({rate['near_ties']} near-ties under {INT8_NEAR_TIE:.0%} of the largest logit set apart)")
        judged.append(line)
        if rate["rate"] is None:
            failures.append(f"{variant}: every evaluation image is a near-tie for {rate['reference']}; nothing judged")
        elif (p_value := agreement_p_value(rate)) < INT8_SIGNIFICANCE:
            failures.append(f"{line}: {rate['rate']:.1%}, too few for {INT8_MIN_AGREEMENT:.0%} agreement "
                            f"(p = {p_value:.2g} < {INT8_SIGNIFICANCE})")
    suite.verdicts.extend(f"{model_name} int8: {line}" for line in judged)
    if not judged and not failures:
        pytest.skip(f"no int8 variant of {model_name} could run: "
                    + "; ".join(f"{v}: {skipped.get(v, 'not built')}" for v in int8))
    assert not failures, f"{model_name}: " + "; ".join(failures)
