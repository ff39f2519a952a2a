"""`pytest -m tune`: regenerate each selected model's tuning log for this CPU.

Warm start by default: the search starts from the nearest compatible stored log, re-timed here (about 15 minutes
for ResNet18 on 2 cores); `--tune-cold` searches from scratch (about 45 minutes).
"""

from __future__ import annotations

import pytest

from cpubench import tvm_support as tv
from cpubench.errors import UsageError
from cpubench.tuning import DEFAULT_TRIALS_PER_TASK, TuneBudget, tune_model
from cpubench.tuning.model_timing import time_in_workers


@pytest.mark.tune
def test_tune(suite, model_name, capsys):
    settings = suite.settings
    budget = TuneBudget(trials=settings.tune_trials,
                        trials_per_task=settings.tune_trials_per_task or DEFAULT_TRIALS_PER_TASK)
    model = suite.store.model(model_name)

    try:
        with capsys.disabled():  # progress lines are for the person waiting, show them live
            outcome = tune_model(model_name=model.disk_key,
                                 relax_mod=tv.import_onnx(suite.store.onnx_path(model_name), model.input_shape,
                                                          model.input_name),
                                 input_shape=model.input_shape, tuning_logs=settings.tuning_logs,
                                 threads=settings.threads, budget=budget, fresh=settings.tune_fresh,
                                 warm_start=not settings.tune_cold, warm_start_log=settings.tuning_log,
                                 rpc_tracker=settings.rpc_tracker, rpc_key=settings.rpc_key,
                                 emit=lambda line: print(line, flush=True), tune_target=settings.tune_target,
                                 lowering=settings.tune_lowering,
                                 # the tuned model and ONNX Runtime, each in its own worker, interleaved
                                 measure=lambda log_dir: time_in_workers(suite, model_name, log_dir))
    except UsageError as exc:
        pytest.fail(str(exc), pytrace=False)
    meta = outcome.metadata
    assert meta["coverage"].split()[0].split("/")[0] == meta["coverage"].split()[0].split("/")[1]
    assert (outcome.log_dir / "database_tuning_record.json").stat().st_size > 0
