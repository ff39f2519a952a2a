"""pytest plugin: options, parametrization over model x backend, session fixtures, the `tune` marker and
the end-of-session report."""

from __future__ import annotations

import pytest

from .backends import BackendUnavailable
from .errors import UsageError
from .options import Settings, add_options
from .session import LoadedBackend, SuiteSession, machine_summary
from .stats import percentile_stats

SETTINGS_KEY = pytest.StashKey[Settings]()
SESSION_KEY = pytest.StashKey[SuiteSession]()


def pytest_addoption(parser) -> None:
    add_options(parser)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "tune: regenerates tuning logs with MetaSchedule (opt-in: pytest -m tune)")
    try:
        config.stash[SETTINGS_KEY] = Settings.from_config(config)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None


def settings_of(config) -> Settings:
    return config.stash[SETTINGS_KEY]


def pytest_generate_tests(metafunc) -> None:
    settings = settings_of(metafunc.config)
    # Model first, then backend: ids read `resnet18-onnxruntime`, so `-k` selects what one expects.
    if "model_name" in metafunc.fixturenames:
        metafunc.parametrize("model_name", settings.models, scope="session")
    if "backend_name" in metafunc.fixturenames:
        metafunc.parametrize("backend_name", settings.backends, scope="session")


def pytest_collection_modifyitems(config, items) -> None:
    """Tuning takes an hour a model: `tune` tests run only when the marker expression asks for them."""
    if "tune" in (config.getoption("markexpr") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("tune") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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


def load_backend(suite: SuiteSession, model: str, backend: str) -> LoadedBackend:
    """The built backend, or a visible skip (with the fix) or a clean failure naming the file at fault."""
    try:
        return suite.loaded(model, backend)
    except BackendUnavailable as exc:
        pytest.skip(f"{model}-{backend}: {exc}")
    except UsageError as exc:
        pytest.fail(f"{model}-{backend}: {exc}", pytrace=False)


def record_benchmark(suite: SuiteSession, benchmark, loaded: LoadedBackend) -> None:
    """Context of the number (and, when timed, its percentiles) into extra_info and the session report."""
    from .images import describe_class
    from .report import BenchRow

    settings = suite.settings
    extra = benchmark.extra_info
    extra.update({
        "model": loaded.model, "backend": loaded.name, "backend_version": loaded.backend.version(),
        "threads": settings.threads, "batch_size": settings.batch_size,
        "weights": suite.model(loaded.model).weights_source, "image": suite.image_path.name,
        "top1": loaded.top1, "top1_name": describe_class(loaded.top1), "build_seconds": round(loaded.load_seconds, 3),
    })
    for key in ("tvm_target", "tuning_log", "tuning_log_cpu", "tuning_log_transferred", "tuning_log_choice",
                "tuning_log_label", "tuning_coverage"):
        if key in loaded.info:
            extra[key] = loaded.info[key]
    stats = benchmark.stats
    data = list(stats.stats.data) if stats is not None and stats.stats else []
    timing = percentile_stats(data, settings.batch_size) if data else None
    if timing:
        extra.update({k: timing[k] for k in ("p50", "p90", "p99", "ips")})
    # A transferred log's metadata timed the model on another CPU: no comparison with this run's median.
    tuned_ms = None if loaded.info.get("tuning_log_transferred") else \
        (loaded.info.get("tuning_metadata") or {}).get("model_latency_ms")
    if tuned_ms:
        # The tuner timed the same compiled model when it finished; the two should agree (README: within 15%).
        extra["tuning_latency_ms"] = tuned_ms
        if timing:
            extra["median_vs_tuning_pct"] = round((timing["median"] * 1e3 / tuned_ms - 1) * 100, 1)
    suite.results.append(BenchRow.from_loaded(loaded, timing, extra))


def pytest_benchmark_update_machine_info(config, machine_info) -> None:
    from .versions import backend_versions

    machine_info.update(machine_summary())
    machine_info["backend_versions"] = backend_versions()


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
        from . import gate

        settings = suite.settings
        key = gate.machine_key(settings.threads, settings.batch_size)
        try:
            gate.update(settings.gate_file, key, suite.results,
                        {"cpu_name": machine_summary()["cpu_name"], "threads": settings.threads})
        except UsageError as exc:
            terminalreporter.write_line(f"gate update failed: {exc}", red=True)
        else:
            terminalreporter.write_line(f"expected ratios for {key} stored in {settings.gate_file}")
