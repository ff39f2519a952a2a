"""pytest plugin: options, parametrization over model x backend, session fixtures, the `tune` marker and
the end-of-session report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from . import benchmark_adapter
from .backends import BackendUnavailable
from .errors import UsageError
from .launcher import BuiltVariant
from .machine import summary as machine_summary
from .options import Settings, add_options
from .session import SuiteSession
from .stats import call_stats, median_interval, percentile_stats
from .worker import WorkerDied

SETTINGS_KEY = pytest.StashKey[Settings]()
SESSION_KEY = pytest.StashKey[SuiteSession]()
# model -> backend -> node id of its benchmark, as finally collected; and the node ids that have finished.
PLAN_KEY = pytest.StashKey[dict[str, dict[str, str]]]()
FINISHED_KEY = pytest.StashKey[set[str]]()
VERDICT_MARKER = "verdict"


def pytest_addoption(parser) -> None:
    add_options(parser)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "tune: regenerates tuning logs with MetaSchedule (opt-in: pytest -m tune)")
    config.addinivalue_line("markers", "stability: three runs and one beside a CPU hog, ratios compared "
                                       "(opt-in: pytest -m stability)")
    config.addinivalue_line("markers", "power: the regression gate's detection and false-alarm counts "
                                       "(opt-in: pytest -m power)")
    config.addinivalue_line("markers", "alone: a test that runs a timed session of the suite, whose verdicts depend on "
                                       "timing: never beside another test (`make test` runs these after the rest)")
    config.addinivalue_line("markers", f"{VERDICT_MARKER}: reads what the session measured; runs after every "
                                       "benchmark, whatever order plugins chose")
    workers = getattr(config.option, "numprocesses", None)
    if workers not in (None, 0, "0") and reaches_benchmarks(config):
        raise pytest.UsageError(f"-n {workers}: cpubench does not run in parallel (pytest-xdist): benchmarks on "
                                "shared cores measure each other, and pytest-benchmark turns itself off; "
                                "run benches/ without -n (the suite's own tests/ may take it)")
    config.stash[FINISHED_KEY] = set()
    try:
        benchmark_adapter.check_version()
        benchmark_adapter.check_options(benchmark_adapter.command_line(config))
        config.stash[SETTINGS_KEY] = Settings.from_config(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


def reaches_benchmarks(config) -> bool:
    """Whether the run's paths (pytest.ini's testpaths when none is given) reach benches/: a path inside it, or one
    that holds it."""
    benches = (config.rootpath / "benches").resolve()
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path == benches or benches in path.parents or path in benches.parents:
            return True
    return False


def settings_of(config) -> Settings:
    return config.stash[SETTINGS_KEY]


def pytest_generate_tests(metafunc) -> None:
    settings = settings_of(metafunc.config)
    # Model first, then backend: ids read `resnet18-onnxruntime`, so `-k` selects what one expects.
    if "model_name" in metafunc.fixturenames:
        from .models import parse_spec

        metafunc.parametrize("model_name", settings.models, scope="session",
                             ids=[parse_spec(m).test_id for m in settings.models])
    if "variant" in metafunc.fixturenames:
        # (backend, precision) keys: `openvino` for fp32, as before; `openvino-bf16` otherwise.
        metafunc.parametrize("variant", settings.variants, scope="session")


OPT_IN_MARKERS = ("tune", "stability", "power")  # long runs: only when the marker expression names them (`-m tune`)


def pytest_collection_modifyitems(config, items) -> None:
    """Tuning (about 15 minutes a model) and the stability proof (four runs) run only when `-m` asks for them."""
    asked = config.getoption("markexpr") or ""
    opt_in = [marker for marker in OPT_IN_MARKERS if marker not in asked]
    keep, drop = [], []
    for item in items:
        (drop if any(item.get_closest_marker(m) for m in opt_in) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session) -> None:
    """Verdicts last, whatever order pytest or a plugin (pytest-randomly, a reversal) left the items in.

    This hook runs after every `pytest_collection_modifyitems` implementation, wrappers included, and before
    the run (and before `--collect-only` prints the list). Each verdict also checks at run time that the
    benchmarks it reads have finished (see `verdict_inputs`), so an order changed later still cannot pass.
    """
    items = session.items
    verdicts = [item for item in items if item.get_closest_marker(VERDICT_MARKER)]
    if verdicts:
        items[:] = [item for item in items if not item.get_closest_marker(VERDICT_MARKER)] + verdicts
    plan: dict[str, dict[str, str]] = {}
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "originalname", None) == "test_inference" and "variant" in params:
            plan.setdefault(params["model_name"], {})[params["variant"]] = item.nodeid
    session.config.stash[PLAN_KEY] = plan


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    try:
        return (yield)
    finally:
        item.config.stash[FINISHED_KEY].add(item.nodeid)


def verdict_inputs(config, model: str, backends: tuple[str, ...]) -> None:
    """Skip when a selection left out a benchmark the verdict reads (it would be blind); fail when one of them is
    still to run (the order was changed after cpubench's, so the verdict cannot be given honestly)."""
    plan = config.stash.get(PLAN_KEY, {}).get(model, {})
    finished = config.stash.get(FINISHED_KEY, set())
    missing = [backend for backend in backends if backend not in plan]
    if missing:
        pytest.skip(f"{model}: the benchmark of {', '.join(missing)} is not in this run (deselected, -k, --lf); "
                    "the verdict needs every selected backend timed in the same run")
    pending = [backend for backend in backends if plan[backend] not in finished]
    if pending:
        pytest.fail(f"{model}: this verdict ran before the benchmark of {', '.join(pending)}: a plugin reordered "
                    "the tests after cpubench put verdicts last, so no honest verdict can be given", pytrace=False)


def suite_session(config) -> SuiteSession:
    if SESSION_KEY not in config.stash:
        try:
            config.stash[SESSION_KEY] = SuiteSession(settings_of(config))
        except UsageError as exc:
            pytest.fail(str(exc), pytrace=False)
    return config.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def suite(request) -> SuiteSession:
    return suite_session(request.config)


def build_variant(suite: SuiteSession, model: str, variant: str, benchmark=None, config=None) -> BuiltVariant:
    """The built variant, or a visible skip (with the fix) or a clean failure naming the file at fault. With
    --build-jobs above 1 (and the run's config), the first call builds every planned variant, that many at a time."""
    if benchmark is not None:
        benchmark_adapter.claim(benchmark)
    if config is not None and suite.settings.build_jobs > 1:
        planned = [(name, key) for name, keys in config.stash.get(PLAN_KEY, {}).items() for key in keys]
        suite.launcher.build_all(planned, suite.settings.build_jobs)
    try:
        return suite.launcher.build(model, variant)
    except BackendUnavailable as exc:
        pytest.skip(f"{model}-{variant}: {exc}")
    except UsageError as exc:
        failure = f"{model}-{variant}: {exc}"
    except WorkerDied as exc:
        failure = str(exc)  # already names the variant, the signal and the command that reproduces it
    pytest.fail(failure, pytrace=False)  # outside the except: one line, no chained traceback


def timed_rounds(config, suite: SuiteSession, benchmark, model: str, variant: str) -> dict[int, float]:
    """This variant's rounds from the interleaved timing of every variant of every model in this run (done once, by
    the first benchmark to run: each model's rounds spread over the whole timing span), handed to pytest-benchmark
    as its rounds: `--benchmark-json`, `-compare`, `-autosave` and histograms hold them. Empty when benchmarks are
    disabled."""
    if benchmark.disabled:
        return {}
    plan = config.stash.get(PLAN_KEY, {})
    planned = list(plan.get(model, {})) or [variant]
    schedule = suite.measurement.measure(model, planned,
                                         together={name: list(variants) for name, variants in plan.items()})
    rounds = schedule.rounds.get(variant)
    if rounds is None:
        pytest.fail(f"{model}-{variant}: built, but not part of the run's timing", pytrace=False)
    if rounds.failure is not None:
        pytest.fail(str(rounds.failure), pytrace=False)
    benchmark_adapter.hand_over(benchmark, rounds.values)
    # Every timed call, per round in rotation order: per-call latency (p50/p90/p99, stalls, speeds) comes from
    # these, throughput and ratios from the rounds.
    order = sorted(rounds.calls)
    benchmark.extra_info["call_ms"] = [[round(c * 1e3, 4) for c in rounds.calls[r]] for r in order]
    benchmark.extra_info.update(call_stats([c for r in order for c in rounds.calls[r]]))
    benchmark.extra_info.update({"rounds_rotations": schedule.rotations, "round_ms": schedule.round_seconds * 1e3,
                                 "calls_per_round": [len(c) for c in rounds.calls.values()],
                                 # when each round began (Unix time): drift can be plotted against it
                                 "round_started_at": [round(rounds.started[r], 3) for r in rounds.calls],
                                 "round_process": [rounds.process.get(r, 0) for r in rounds.calls]})
    return rounds.round_means


def efficiency_context(suite: SuiteSession, model: str, rounds: dict[int, float]) -> dict[str, Any]:
    """The variant's share of this CPU's float32 peak, per rotation against the peak kernel's round of the same
    rotation, and its efficiency: the same against the best GEMM of the installed libraries (cpubench/yardstick.py)."""
    from .yardstick import GEMMS, PEAK, peak_share, rate_gflops

    flops, kernels = suite.store.flops(model), suite.launcher.yardstick_kernels()
    timed = suite.measurement.yardstick_rounds(model)
    if not flops or PEAK not in timed or not isinstance(kernels.get(PEAK), dict):
        return {}
    share = peak_share(rounds, timed[PEAK], kernels[PEAK]["flops_per_call"], flops)
    if share is None:
        return {}
    peak = rate_gflops(kernels[PEAK]["flops_per_call"], timed[PEAK])
    context: dict[str, Any] = {
        "model_gflop": round(flops / 1e9, 3), "winograd_allowance": round(suite.store.winograd_allowance(model), 3),
        "padding_allowance": round(suite.store.padding_allowance(model), 3),
        "cpu_peak_gflops": round(peak[0], 1), "cpu_peak_gflops_low": round(peak[1], 1),
        "cpu_peak_gflops_high": round(peak[2], 1),
        "peak_share": round(share.value, 4), "peak_share_low": round(share.low, 4),
        "peak_share_high": round(share.high, 4)}
    # The peak is a maximum: a load beside the run can only slow its rounds, and the peak kernel (two threads in
    # lockstep) more than most. The rate of its fastest tenth of rounds is the machine's; a float32 variant whose
    # median outruns it did less arithmetic than the model asks for (gate_decision.implausible_ceiling).
    from statistics import median

    fastest = float(np.percentile(list(timed[PEAK].values()), 10))
    best_peak = kernels[PEAK]["flops_per_call"] / fastest
    gemms = {name: rate_gflops(kernels[name]["flops_per_call"], timed[name]) for name in GEMMS
             if name in timed and isinstance(kernels.get(name), dict)}
    # Whatever ran faster than the peak kernel shows the machine's peak is higher: under a CPUID mask that hides
    # AVX-512 (docs/hide_avx512.c), LLVM emitted 256-bit code (238 GFLOP/s on a Zen 5) while ONNX Runtime's MLAS
    # still ran its AVX-512 MatMul (297).
    best_peak = max([best_peak] + [rate[2] * 1e9 for rate in gemms.values()])
    context.update({"cpu_peak_gflops_best": round(best_peak / 1e9, 1),
                    "best_peak_share": round(flops / median(rounds.values()) / best_peak, 4)})
    if gemms:
        best = max(gemms, key=lambda name: gemms[name][0])
        scale = peak[0] / gemms[best][0]  # the share of the peak, as a share of the best GEMM's rate
        context.update({"cpu_gemm": best, "cpu_gemm_gflops": round(gemms[best][0], 1),
                        "efficiency": round(share.value * scale, 4), "efficiency_low": round(share.low * scale, 4),
                        "efficiency_high": round(share.high * scale, 4)})
    return context


def process_medians(rounds: dict[int, float], processes: dict[int, int]) -> list[float]:
    """The median round of each worker process that timed the variant, in ms (their spread is in the report)."""
    from statistics import median

    by_process: dict[int, list[float]] = {}
    for rotation, seconds in rounds.items():
        by_process.setdefault(processes.get(rotation, 0), []).append(seconds)
    return [round(median(values) * 1e3, 4) for _, values in sorted(by_process.items())]


def record_benchmark(suite: SuiteSession, benchmark, built: BuiltVariant, rounds: dict[int, float]) -> None:
    """Context of the number (and, when timed, its percentiles and interval) into extra_info and the report."""
    from .images import describe_class
    from .results import BenchRow

    settings = suite.settings
    extra = benchmark.extra_info
    extra.update({
        "model": built.model, "backend": built.backend, "variant": built.key,
        "precision": built.info.get("precision", "fp32"), "backend_version": built.version,
        "threads": settings.threads, "batch_size": settings.batch_size,
        "weights": suite.store.model(built.model).weights_source, "image": suite.store.image_path.name,
        "top1": built.top1, "top1_name": describe_class(built.top1, built.classes), "classes": built.classes,
        "build_seconds": round(built.load_seconds, 3),
        "onnx_export_seconds": round(suite.store.export_seconds.get(built.model, 0.0), 3),
        **{key: (round(value, 4) if isinstance(value, float) else value) for key, value in built.process.items()},
    })
    # What the backend read back from its runtime (threads, precision, delegation, tuning log...); the tuning
    # metadata and the per-function list stay out (large, and in the log's own files).
    for key, value in built.info.items():
        if key not in ("tuning_metadata", "tuned_functions") and key not in extra:
            extra[key] = value
    data = list(rounds.values())
    processes = dict(zip(sorted(rounds), extra.get("round_process", []), strict=False))
    timing = percentile_stats(data, settings.batch_size) if data else None
    if timing:
        _, timing["median_low"], timing["median_high"] = median_interval(
            data, groups=[processes.get(r, 0) for r in sorted(rounds)])
        extra["process_medians_ms"] = process_medians(rounds, processes)
        if extra.get("calls"):  # percentiles of single calls, not of round means (a p99 of 60 rounds is their max)
            timing.update({"p50": extra["call_p50"], "p90": extra["call_p90"], "p99": extra["call_p99"],
                           "calls": extra["calls"]})
        extra.update({k: timing[k] for k in ("p50", "p90", "p99", "ips", "median_low", "median_high")})
        extra.update(efficiency_context(suite, built.model, rounds))
    # A transferred log's metadata timed the model on another CPU: no comparison with this run's median.
    tuned_ms = None if built.info.get("tuning_log_transferred") else \
        (built.info.get("tuning_metadata") or {}).get("model_latency_ms")
    if tuned_ms:
        # The tuner timed the same compiled model when it finished: the report shows how far this run differs.
        extra["tuning_latency_ms"] = tuned_ms
        if timing:
            extra["median_vs_tuning_pct"] = round((timing["median"] * 1e3 / tuned_ms - 1) * 100, 1)
    if extra["precision"] == "int8":
        # What the speed costs: agreement with float32 on the evaluation set, computed in the workers once the
        # model's timing is over (never beside it).
        try:
            extra["int8_agreement"] = suite.int8.agreement(built.model, built.key)
        except (UsageError, BackendUnavailable, WorkerDied) as exc:
            extra["int8_agreement"] = {"error": str(exc)}
    suite.results.append(BenchRow(built.model, built.key, built.top1, timing, dict(extra), dict(rounds),
                                  processes))


def pytest_benchmark_update_machine_info(config, machine_info) -> None:
    from .versions import backend_versions

    machine_info.update(machine_summary())
    machine_info["backend_versions"] = backend_versions()


def pytest_unconfigure(config) -> None:
    if SESSION_KEY in config.stash:
        config.stash[SESSION_KEY].close()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    from .cache import NOTICES

    for notice in NOTICES:  # damaged cache entries rebuilt this session; the stderr line may have been captured
        terminalreporter.write_line(notice, yellow=True)
    if SESSION_KEY not in config.stash:
        return
    suite = config.stash[SESSION_KEY]
    if not suite.results:
        return
    from .report import write_report

    write_report(suite, terminalreporter)
    if suite.settings.gate_update:
        store_bands(suite, terminalreporter, exitstatus)


def store_bands(suite: SuiteSession, terminalreporter, exitstatus) -> None:
    """--gate-update: add this run's ratios to this machine's stored runs, for what it measured only, and print old
    vs new bands; a run with a failed test is refused (its numbers may be a failure's)."""
    from . import gate
    from .machine import bf16_class, host_profile, llvm_cpu

    settings = suite.settings
    failed = len(terminalreporter.stats.get("failed", [])) + len(terminalreporter.stats.get("error", []))
    if failed or exitstatus not in (0, pytest.ExitCode.OK):
        terminalreporter.write_line(f"--gate-update refused: {failed or 'some'} test(s) failed in this run; nothing "
                                    f"stored in {settings.gate_file}", red=True)
        return
    key = gate.machine_key(settings.threads, settings.batch_size)
    try:
        changes = gate.update(settings.gate_file, key, suite.results,
                              {"cpu_name": machine_summary()["cpu_name"], "llvm_cpu": llvm_cpu(),
                               "threads": settings.threads, "bf16_class": bf16_class(),
                               "vector_isa": host_profile().vector_isa})
    except UsageError as exc:
        terminalreporter.write_line(f"gate update failed: {exc}", red=True)
        return
    terminalreporter.write_line(f"bands for {key} updated in {settings.gate_file} (old -> new):")
    for line in changes:
        terminalreporter.write_line(f"  {line}")
