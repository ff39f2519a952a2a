"""Fixtures for the suite's own fast tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_onnx():
    from tiny import tiny_model

    from cpubench.onnx_export import export_onnx

    return export_onnx(tiny_model())


@pytest.fixture(scope="session")
def tiny_tuned(tmp_path_factory, tiny_onnx):
    """A tuning log for the tiny model, made with a handful of trials into a temporary folder."""
    from tiny import TINY_SHAPE, tiny_relax

    from cpubench.tuning import TuneBudget, tune_model

    logs = tmp_path_factory.mktemp("tuning_logs")
    lines: list[str] = []
    outcome = tune_model(model_name="tiny", relax_mod=tiny_relax(tiny_onnx), input_shape=TINY_SHAPE,
                         tuning_logs=logs, threads=1, budget=TuneBudget(trials=16, trials_per_task=4,
                                                                        trials_per_iter=4, remeasure_top_k=2,
                                                                        population=16),
                         emit=lines.append, seed=0, work_dir=logs.parent / "tiny-work")
    return outcome, lines
