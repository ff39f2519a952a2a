"""Every backend, in every precision that ran, must give the same answer on the photo as the reference: PyTorch
in float32, the model as written (ONNX Runtime for an onnx: file). Rules and tolerances: cpubench/agreement.py."""

from __future__ import annotations

import pytest

from cpubench.agreement import compare_logits, compare_top1, reference_of
from cpubench.backends import BackendUnavailable
from cpubench.errors import UsageError
from cpubench.images import CAT_CLASSES, describe_class
from cpubench.plugin import VERDICT_MARKER
from cpubench.worker import WorkerDied

# Verdicts run after every benchmark (cpubench/plugin.py); these build what they compare themselves, so their
# answer does not depend on order either.
pytestmark = getattr(pytest.mark, VERDICT_MARKER)


def loaded_backends(suite, model_name):
    loaded, skipped = {}, {}
    for backend in suite.settings.variants:
        try:
            loaded[backend] = suite.loaded(model_name, backend)
        except (BackendUnavailable, WorkerDied) as exc:  # a dead worker fails its own benchmark, not this check
            skipped[backend] = str(exc)
        except UsageError as exc:
            pytest.fail(f"{model_name}-{backend}: {exc}", pytrace=False)
    return loaded, skipped


def test_same_top1(suite, model_name):
    loaded, skipped = loaded_backends(suite, model_name)
    if not loaded:
        pytest.skip(f"no backend could run {model_name}: {skipped}")
    reference_name = reference_of(loaded)
    reference = loaded[reference_name]
    disagree, ties, margin = compare_top1(reference_name, loaded)
    if ties:
        suite.verdicts.append(f"{model_name} top-1: tie ({reference_name}'s two best classes are {margin:.3g} apart, "
                              f"under the logit tolerance); compared logits instead for {', '.join(ties)}")
    assert not disagree, (f"{model_name}: {reference_name} (fp32) says "
                          f"{describe_class(reference.top1, reference.classes)}, but " + "; ".join(disagree))
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
    failures = compare_logits(reference_of(loaded), loaded)
    assert not failures, f"{model_name}: " + "; ".join(failures)
