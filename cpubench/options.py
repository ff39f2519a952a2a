"""The suite's command-line options: one group, validated at parse time so a wrong value fails before any build."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from .cache import REPO_ROOT
from .errors import UsageError
from .winograd import LOWERINGS, WINOGRAD


def physical_cores() -> int:
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    return max(1, min(cores or os.cpu_count() or 1, len(os.sched_getaffinity(0))))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def input_size(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    try:
        size = (int(height), int(width if sep else height))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW (e.g. 224 or 256x192), got {text!r}") from None
    if min(size) < 8:
        raise argparse.ArgumentTypeError(f"expected sizes of at least 8 pixels, got {text!r}")
    return size


def name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return list(dict.fromkeys(names))


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_options(parser) -> None:
    from .backends import BACKENDS
    from .models import MODELS
    from .precision import DEFAULT_PRECISION, PRECISIONS

    group = parser.getgroup("cpubench", "CPU inference backend comparison")
    group.addoption("--models", type=name_list, default=list(MODELS), metavar="NAMES",
                    help=f"comma-separated models: {', '.join(MODELS)}, torchvision:NAME, timm:NAME or "
                         f"onnx:PATH; default: {','.join(MODELS)}")
    group.addoption("--input-size", type=input_size, default=None, metavar="N|HxW",
                    help="input height and width for every model (preprocessing follows); default: what the "
                         "model declares (timm config, torchvision transforms, the ONNX input), else 224")
    group.addoption("--backends", type=name_list, default=list(BACKENDS), metavar="NAMES",
                    help=f"comma-separated backends to run ({', '.join(BACKENDS)}); default: all")
    group.addoption("--precision", type=name_list, default=[DEFAULT_PRECISION], metavar="NAMES",
                    help=f"comma-separated precisions ({', '.join(PRECISIONS)}); each backend runs in each one it "
                         f"and this CPU support, the others are skipped with the reason; default: {DEFAULT_PRECISION}")
    group.addoption("--threads", type=positive_int, default=None, metavar="N",
                    help=f"threads for every backend alike; default: physical cores ({physical_cores()})")
    group.addoption("--batch-size", type=positive_int, default=1, metavar="N",
                    help="images per inference, for throughput runs; default: 1")
    group.addoption("--weights", type=Path, default=None, metavar="PATH",
                    help="PyTorch checkpoint (state dict) for every torch-defined model of --models (named, "
                         "torchvision:, timm:; e.g. resnet18-5c106cde.pth), except that efficientnet_lite0 keeps "
                         "its own ImageNet weights when other models run beside it; default: each model's own "
                         "(torchvision's cache if it holds them, the weights efficientnet_lite0 ships with), else a "
                         "seeded initialisation")
    group.addoption("--image", type=Path, default=None, metavar="PATH",
                    help="photo to classify; default: fixtures/chelsea.png")
    group.addoption("--results-dir", type=Path, default=REPO_ROOT / "results", metavar="DIR",
                    help="where the report (Markdown, JSON, PNG chart) is written; default: results/")
    group.addoption("--tuning-logs", type=Path, default=REPO_ROOT / "tuning_logs", metavar="DIR",
                    help="stored MetaSchedule databases, per model and CPU; default: tuning_logs/")
    group.addoption("--tuning-log", default=None, metavar="KEY",
                    help="tvm-tuned and `-m tune`'s warm start: use this stored log, a folder name under "
                         "tuning_logs/<model>/ such as znver4-2c, or a log folder's path; default: this CPU's, "
                         "else the nearest compatible one")
    group.addoption("--tuning-log-exact", action="store_true", default=False,
                    help="tvm-tuned: only a log tuned on this CPU and core count, else skip; default: off")
    group.addoption("--tune-trials", type=positive_int, default=None, metavar="N",
                    help="`-m tune`: measured candidates in all, per model; default: 1200 when warm-started "
                         "from a stored log, 3000 from scratch")
    group.addoption("--tune-trials-per-task", type=positive_int, default=None, metavar="N",
                    help="`-m tune`: most candidates for one task; default: 256")
    group.addoption("--tune-fresh", action="store_true", default=False,
                    help="`-m tune`: discard an unfinished run's measurements instead of resuming; default: resume")
    group.addoption("--tune-cold", action="store_true", default=False,
                    help="`-m tune`: search from scratch instead of starting from the nearest stored log; "
                         "default: warm start")
    group.addoption("--tune-target", default=None, metavar="CPU",
                    help="`-m tune`: tune code for this LLVM CPU instead of this machine's own, e.g. the ISA levels "
                         "x86-64-v3 (AVX2, FMA: every AVX2 CPU) or x86-64-v4 (AVX-512); this machine must run its "
                         "code. The log is stored as <CPU>-<N>c with the machine it was timed on; default: this CPU")
    group.addoption("--tune-lowering", default=WINOGRAD, choices=LOWERINGS,
                    help="`-m tune`: how 3x3 stride-1 convolutions are computed in the tuned code: winograd "
                         "(Winograd transforms around a batched matrix product, a quarter of the multiplications) or "
                         "direct; stored in the log's metadata, which decides how `tvm-tuned` compiles it; "
                         "default: winograd")
    group.addoption("--rpc-tracker", type=host_port, default=None, metavar="HOST:PORT",
                    help="`-m tune`: measure candidates on devices of this TVM RPC tracker; default: this machine")
    group.addoption("--rpc-key", default=None, metavar="KEY",
                    help="`-m tune`: device key registered with --rpc-tracker; default: none")
    group.addoption("--round-ms", type=positive_int, default=50, metavar="MS",
                    help="length of one timed round; variants take turns in shuffled rotations of such rounds, "
                         "each in its own worker process, until each has had --benchmark-max-time of timed calls "
                         "(pytest.ini sets 3 s); default: 50")
    group.addoption("--processes", type=positive_int, default=2, metavar="N",
                    help="worker processes per variant, taking its rounds in turn: a process's speed differs by a few "
                         "percent from the next one's (memory and thread placement), so each variant's median pools "
                         "N of them; ONNX Runtime, which every ratio divides by, gets at least 3. A variant whose "
                         "call outlasts a few rounds (untuned TVM) keeps one; default: 2")
    group.addoption("--build-jobs", type=positive_int, default=1, metavar="N",
                    help="variants whose first worker process builds at the same time, before anything is timed: "
                         "faster on a cold cache, but above 1 the cold-start and build columns are not measured "
                         "alone (the report says so); `make test` uses 2; default: 1")
    group.addoption("--worker-timeout", type=positive_int, default=900, metavar="SECONDS",
                    help="a worker that gives no answer to one request (a build, a round) for this long is killed "
                         "and its variant fails; default: 900")
    group.addoption("--gate-file", type=Path, default=REPO_ROOT / "benches" / "ratios.json", metavar="PATH",
                    help="expected backend/onnxruntime ratios per machine, checked by "
                         "test_ratio_gate; default: benches/ratios.json")
    group.addoption("--gate-update", action="store_true", default=False,
                    help="add this run's ratios to this machine's stored runs in --gate-file (what this run measured "
                         "only; refused when a test failed); default: off")
    group.addoption("--gate-power-replicates", type=positive_int, default=10, metavar="N",
                    help="`-m power`: quick runs per condition (unchanged; 3 backends x 3 slowdowns); default: 10")


def check_slowdown(settings: Settings) -> None:
    """CPUBENCH_SLOWDOWN (fault injection, worker_process.py) must be well formed and name a selected variant, or a
    run meant to prove the gate would silently slow nothing."""
    from .worker_process import SLOWDOWN_VARIABLE, injected_slowdown

    text = os.environ.get(SLOWDOWN_VARIABLE, "")
    injected_slowdown("", "", text)  # every entry's form
    names = {v for v in settings.variants} | {f"{m}-{v}" for m in settings.models for v in settings.variants}
    unknown = [entry.rpartition("=")[0].strip() for entry in text.split(",") if entry.strip()]
    unknown = [name for name in unknown if name not in names]
    if unknown:
        raise UsageError(f"{SLOWDOWN_VARIABLE}: {', '.join(unknown)} is no selected variant (e.g. onnxruntime, "
                         f"resnet18-openvino)")


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]
    input_size: tuple[int, int] | None
    backends: tuple[str, ...]
    precisions: tuple[str, ...]
    threads: int
    batch_size: int
    weights: Path | None
    image: Path | None
    results_dir: Path
    tuning_logs: Path
    tuning_log: str | None
    tuning_log_exact: bool
    tune_trials: int | None
    tune_trials_per_task: int | None
    tune_fresh: bool
    tune_cold: bool
    rpc_tracker: tuple[str, int] | None
    rpc_key: str | None
    gate_file: Path
    gate_update: bool
    round_ms: int = 50
    tune_target: str | None = None
    tune_lowering: str = WINOGRAD
    worker_timeout: int = 900
    processes: int = 2
    build_jobs: int = 1
    # pytest-benchmark's --benchmark-max-time and --benchmark-min-rounds: each variant's timed calls in seconds
    # (spread over the rotations), and its fewest rounds
    seconds_per_variant: float = 3.0
    min_rounds: int = 5

    @property
    def variants(self) -> tuple[str, ...]:
        """Every selected (backend, precision) as its key: `torch`, `openvino-bf16`, ..."""
        from .precision import variant_keys

        return variant_keys(self.backends, self.precisions)

    @classmethod
    def from_config(cls, config) -> Settings:
        from .backends import validate_backend_names
        from .models import check_spec, parse_spec

        opt = config.getoption
        models = opt("models")
        for model in models:
            check_spec(parse_spec(model))  # fails naming the model, with the closest valid names
        backends = validate_backend_names(opt("backends"))
        from .precision import PRECISIONS

        bad = [p for p in opt("precision") if p not in PRECISIONS]
        if bad:
            raise UsageError(f"--precision: unknown precision {', '.join(map(repr, bad))}; "
                             f"valid precisions: {', '.join(PRECISIONS)}")
        if (opt("rpc_tracker") is None) != (opt("rpc_key") is None):
            raise UsageError("--rpc-tracker and --rpc-key go together: give both or neither")
        settings = cls(
            models=tuple(models), input_size=opt("input_size"), backends=tuple(backends),
            precisions=tuple(opt("precision")),
            threads=opt("threads") or physical_cores(),
            batch_size=opt("batch_size"), weights=opt("weights"), image=opt("image"),
            results_dir=opt("results_dir"), tuning_logs=opt("tuning_logs"), tuning_log=opt("tuning_log"),
            tuning_log_exact=opt("tuning_log_exact"), tune_trials=opt("tune_trials"),
            tune_trials_per_task=opt("tune_trials_per_task"), tune_fresh=opt("tune_fresh"), tune_cold=opt("tune_cold"),
            rpc_tracker=opt("rpc_tracker"), rpc_key=opt("rpc_key"),
            gate_file=opt("gate_file"), gate_update=opt("gate_update"),
            round_ms=opt("round_ms"), worker_timeout=opt("worker_timeout"), tune_target=opt("tune_target"),
            tune_lowering=opt("tune_lowering"), processes=opt("processes"), build_jobs=opt("build_jobs"),
            seconds_per_variant=float(opt("benchmark_max_time", 3.0)), min_rounds=int(opt("benchmark_min_rounds", 5)),
        )
        if settings.weights is not None and not settings.weights.is_file():
            raise UsageError(f"--weights: no such file: {settings.weights}")
        if settings.tuning_log is not None and settings.tuning_log_exact:
            raise UsageError("--tuning-log and --tuning-log-exact contradict each other: give one or neither")
        if settings.tuning_log is not None:
            from .log_finder import named_log
            from .models import disk_key_of

            for model in settings.models:
                named_log(settings.tuning_logs, disk_key_of(model), settings.tuning_log)  # fails naming the option
        check_slowdown(settings)
        if settings.image is not None and not settings.image.is_file():
            raise UsageError(f"--image: no such file: {settings.image}")
        return settings
