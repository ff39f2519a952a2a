"""Every backend that ran must give the same answer on the photo as PyTorch, the model as written."""

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


def loaded_backends(suite, model_name):
    loaded, skipped = {}, {}
    for backend in suite.settings.backends:
        try:
            loaded[backend] = suite.loaded(model_name, backend)
        except BackendUnavailable as exc:
            skipped[backend] = str(exc)
        except UsageError as exc:
            pytest.fail(f"{model_name}-{backend}: {exc}", pytrace=False)
    return loaded, skipped


def test_same_top1(suite, model_name):
    loaded, skipped = loaded_backends(suite, model_name)
    if not loaded:
        pytest.skip(f"no backend could run {model_name}: {skipped}")
    reference_name = "torch" if "torch" in loaded else next(iter(loaded))
    reference = loaded[reference_name]
    disagree = [f"{name} says {describe_class(b.top1)}" for name, b in loaded.items() if b.top1 != reference.top1]
    assert not disagree, (f"{model_name}: {reference_name} says {describe_class(reference.top1)}, but "
                          + "; ".join(disagree))
    if model_name == "efficientnet_lite0" and suite.default_image:
        # Real ImageNet weights on the shipped cat photo: a non-cat answer means broken preprocessing or export.
        assert reference.top1 in CAT_CLASSES, (
            f"efficientnet_lite0 on {suite.image_path.name}: expected a cat class (281-285), "
            f"got {describe_class(reference.top1)}")
    if len(loaded) < 2:
        pytest.skip(f"only {reference_name} ran for {model_name}; nothing to compare it with")


def test_logits_match_torch(suite, model_name):
    loaded, _ = loaded_backends(suite, model_name)
    if "torch" not in loaded or len(loaded) < 2:
        pytest.skip(f"needs torch and another backend for {model_name}; ran: {', '.join(loaded) or 'none'}")
    reference = loaded["torch"].logits
    scale = float(np.abs(reference).max())
    failures = []
    for name, backend in loaded.items():
        worst = float(np.abs(backend.logits - reference).max())
        if worst > LOGIT_TOLERANCE * scale:
            failures.append(f"{name}: max |logit - torch| = {worst:.3g} > {LOGIT_TOLERANCE} x {scale:.3g}")
    assert not failures, f"{model_name}: " + "; ".join(failures)
