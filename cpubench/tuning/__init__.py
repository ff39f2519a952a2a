"""`pytest -m tune`: regenerate a model's MetaSchedule tuning log for this CPU, safely and resumably.

A run searches in its own work folder (`.cache/tuning-work/<model>/<target key>/`, kept between runs so an
interrupted run resumes from what it measured), then re-measures the best candidates of every task one at a
time with nothing else compiling, keeps the best record per workload, checks that the log covers every
tunable function, times the whole tuned model, and only then replaces `tuning_logs/<model>/<target key>/`.

One module per job: budget, progress, adapters (MetaSchedule's builder and runner), search, remeasure,
model_timing, storage (work folder, log swap), warm_start, and orchestrate (`tune_model`, the metadata).
"""

from __future__ import annotations

from .budget import DEFAULT_TRIALS, DEFAULT_TRIALS_PER_TASK, DEFAULT_WARM_TRIALS, TuneBudget
from .orchestrate import TuneOutcome, tune_model
from .storage import count_records, work_dir_for
from .warm_start import WarmStart

__all__ = ["DEFAULT_TRIALS", "DEFAULT_TRIALS_PER_TASK", "DEFAULT_WARM_TRIALS", "TuneBudget", "TuneOutcome",
           "WarmStart", "count_records", "tune_model", "work_dir_for"]
