"""The run's plan: which variants are built, what each worker is asked to build, and in how many processes each
variant is timed. Pure decisions: the launcher (launcher.py) carries them out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .backends import BACKENDS, TORCH_FREE, BackendUnavailable, backend_module, check_declared_precision
from .errors import UsageError
from .images import make_batch
from .model_store import ModelStore
from .models import parse_spec
from .options import Settings, physical_cores
from .precision import Variant, cpu_lacks
from .results import REFERENCE_BACKEND
from .schedule import LONG_CALL_SECONDS
from .worker import BuildRequest
from .yardstick import KERNELS, TORCH_FREE_KERNELS

# Worker processes timing the reference backend (ONNX Runtime, 0.4 s to start): every ratio is divided by its median,
# and one process's median can sit several percent from another's (measured: 58.9% against 62.5-63.1% of the GEMM
# rate).
REFERENCE_PROCESSES = 3


@dataclass(frozen=True)
class WorkerSpec:
    """How one worker process is started: its name in messages, the command that reproduces it, its log, its
    environment."""

    label: str
    reproduce: str
    log_path: Path
    env: dict[str, str]
    timeout: float


class RunPlan:
    def __init__(self, settings: Settings, store: ModelStore) -> None:
        self.settings = settings
        self.store = store

    def variant(self, key: str) -> Variant:
        """The variant a key names, if this run can build it here: an unknown backend is a UsageError, a precision
        this CPU lacks BackendUnavailable (a visible skip)."""
        variant = Variant.parse(key)
        if variant.backend not in BACKENDS:
            raise UsageError(f"--backends: unknown backend {variant.backend!r}")
        lacking = cpu_lacks(variant.precision)
        if lacking:
            raise BackendUnavailable(lacking)
        check_declared_precision(variant.backend, variant.precision)  # no worker started for a path it never has
        return variant

    def module(self, key: str) -> str:
        """The module defining `create()` for a variant or a yardstick kernel."""
        return "cpubench.yardstick" if key in KERNELS else backend_module(Variant.parse(key).backend)

    def request(self, model_name: str, key: str, tuning_log: str | None = None) -> BuildRequest:
        """What a worker is asked to build: `key` of the model, from the store's model, export or int8 file;
        `tuning_log` overrides --tuning-log (a log folder the tuner has just made)."""
        store, settings = self.store, self.settings
        variant = Variant(key) if key in KERNELS else Variant.parse(key)
        model = store.model(model_name)
        int8 = variant.precision == "int8"
        # int8: the ONNX-based runtimes load the quantized QDQ file; the others quantize with the calibration set.
        qdq = int8 and variant.backend in TORCH_FREE
        return BuildRequest(
            variant=key, backend=variant.backend, precision=variant.precision,
            module=self.module(key), model=replace(model, module=None),  # a torch module does not cross processes
            model_recipe=None if model.module is None else
            (model_name, store.weights_for(model_name), settings.batch_size, settings.input_size),
            onnx_path=store.quantized(model_name).path if qdq else store.onnx_path(model_name),
            threads=settings.threads,
            tuning_logs=settings.tuning_logs, tuning_log_exact=settings.tuning_log_exact,
            tuning_log_name=tuning_log or settings.tuning_log,
            batch=make_batch(store.image_for(model_name), settings.batch_size),
            block_modules=("torch",) if variant.backend in TORCH_FREE or key in TORCH_FREE_KERNELS else (),
            calibration=store.calibration(model_name) if int8 and not qdq else None)

    def worker_spec(self, model_name: str, key: str, copy: int = 0, label: str = "") -> WorkerSpec:
        """`copy` > 0 is another process of the same variant (see `processes_for`); `label` names a one-off worker
        (the tuner's)."""
        threads = str(self.settings.threads)
        suffix = f"-p{copy + 1}" if copy else (f"-{label}" if label else "")
        return WorkerSpec(
            f"{parse_spec(model_name).test_id}-{key}{suffix}", self.reproduce_command(model_name, key),
            self.settings.results_dir / "workers" / f"{self.store.model(model_name).disk_key}-{key}{suffix}.log",
            {"OMP_NUM_THREADS": threads, "TVM_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"},
            self.settings.worker_timeout)

    def reproduce_command(self, model: str, key: str) -> str:
        """The command that runs this variant alone."""
        settings = self.settings
        parts = ["pytest benches/", f"--models {model}"]
        if key not in KERNELS:
            variant = Variant.parse(key)
            parts += [f"--backends {variant.backend}", f"--precision {variant.precision}"]
        if settings.threads != physical_cores():
            parts.append(f"--threads {settings.threads}")
        if settings.batch_size != 1:
            parts.append(f"--batch-size {settings.batch_size}")
        return " ".join(parts)

    def processes_for(self, key: str, first_call_seconds: float) -> int:
        """How many worker processes take a variant's rounds in turn: --processes; the reference backend, which
        every ratio divides by, at least REFERENCE_PROCESSES; one for a variant whose call outlasts a few rounds.
        A process's speed differs by a few percent from the next one's (memory placement, thread placement), which
        interleaving within one process cannot cancel; pooling processes does (pyperf spreads its runs over
        processes for the same reason)."""
        if key == REFERENCE_BACKEND:
            return max(REFERENCE_PROCESSES, self.settings.processes)
        if first_call_seconds > LONG_CALL_SECONDS:
            return 1
        return self.settings.processes
