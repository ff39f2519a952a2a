"""Verdicts (the gate, the agreement tests) give the same answer whatever the test order, plugin set, selection
and supported pytest: they run after every benchmark they read, a blind one skips, and parallel runs are refused."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from child import pytest_env, require_alone

REPO = Path(__file__).resolve().parent.parent
VERDICTS = ("test_ratio_gate", "test_same_top1", "test_logits_match_reference")

# Plugins that reorder the items the way people's plugins do: pytest-randomly shuffles in a tryfirst hook.
REORDER_PLUGINS = {
    "reverse_tryfirst": "import pytest\n\n@pytest.hookimpl(tryfirst=True)\n"
                        "def pytest_collection_modifyitems(items):\n    items.reverse()\n",
    "reverse_trylast": "import pytest\n\n@pytest.hookimpl(trylast=True)\n"
                       "def pytest_collection_modifyitems(items):\n    items.reverse()\n",
    "reverse_wrapper": "import pytest\n\n@pytest.hookimpl(wrapper=True)\n"
                       "def pytest_collection_modifyitems(items):\n    result = yield\n    items.reverse()\n"
                       "    return result\n",
}


def floor_versions() -> dict[str, str]:
    """The lowest pytest and pytest-benchmark that pyproject.toml admits (`name>=X`)."""
    text = (REPO / "pyproject.toml").read_text()
    floors = dict(re.findall(r'^\s*"(pytest|pytest-benchmark)>=([\d.]+)[",]', text, flags=re.M))
    assert set(floors) == {"pytest", "pytest-benchmark"}, floors
    return floors


def pip_target(directory: Path, *requirements: str) -> Path:
    """Install `requirements` (without dependencies) into `directory`; skip only when PyPI cannot be reached.

    Unreachable: pip's output shows a connection error and no version list from the index (`from versions:
    none`, or none at all). Any other failure (a version the index does not have, a conflict) fails with pip's
    message."""
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                             str(directory), *requirements], capture_output=True, text=True, timeout=300)
    if result.returncode == 0:
        return directory
    output = f"{result.stdout}\n{result.stderr}".strip()
    # What pip prints when it cannot reach the index: urllib3's retry warnings and the errors they end in.
    unreachable_signs = ("Failed to establish a new connection", "Temporary failure in name resolution",
                         "Name or service not known", "Network is unreachable", "No route to host",
                         "Connection refused", "NewConnectionError", "ConnectionError", "ProxyError", "timed out",
                         "ReadTimeoutError")
    index_answered = re.search(r"\(from versions: (?!none\))", output) is not None
    if any(sign in output for sign in unreachable_signs) and not index_answered:
        pytest.skip(f"cannot install {' '.join(requirements)} from PyPI here: "
                    f"{output.splitlines()[-1:]}; the test needs network access to PyPI")
    pytest.fail(f"pip could not install {' '.join(requirements)} (exit {result.returncode}):\n"
                + "\n".join(output.splitlines()[-20:]), pytrace=False)


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("plugins")
    for name, source in REORDER_PLUGINS.items():
        (directory / f"{name}.py").write_text(source)
    return directory


@pytest.fixture(scope="session")
def floor_site(tmp_path_factory) -> Path:
    floors = floor_versions()
    return pip_target(tmp_path_factory.mktemp("floor"), *(f"{name}=={v}" for name, v in floors.items()))


@pytest.fixture(scope="session")
def reorder_site(tmp_path_factory) -> Path:
    return pip_target(tmp_path_factory.mktemp("reorder"), "pytest-randomly", "pytest-xdist", "execnet")


@pytest.fixture(scope="session")
def emptied_logs(tmp_path_factory) -> Path:
    """A copy of tuning_logs/ whose ResNet18 logs have their records emptied (workloads and metadata kept)."""
    logs = tmp_path_factory.mktemp("logs") / "tuning_logs"
    shutil.copytree(REPO / "tuning_logs", logs)
    for records in (logs / "resnet18").glob("*/database_tuning_record.json"):
        records.write_text("")
    return logs


def run_pytest(*args: str, paths: tuple[Path, ...] = (), timeout: int = 900) -> subprocess.CompletedProcess:
    if not {"--collect-only", "--version"} & set(args):
        require_alone("run_pytest")
    env = pytest_env(PYTHONPATH=os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "benches", "-p", "no:cacheprovider", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)


def collected(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stdout.splitlines() if "::" in line and not line.startswith(("FAILED", "ERROR"))]


def assert_verdicts_last(ids: list[str]) -> None:
    benchmarks = [i for i, node in enumerate(ids) if "::test_inference[" in node]
    verdicts = [i for i, node in enumerate(ids) if any(f"::{name}[" in node for name in VERDICTS)]
    assert benchmarks and verdicts, ids
    assert max(benchmarks) < min(verdicts), "\n".join(ids)


@pytest.mark.parametrize("plugin", sorted(REORDER_PLUGINS))
def test_verdicts_come_after_every_benchmark_whatever_a_plugin_does(plugin_dir, plugin):
    result = run_pytest("--collect-only", "-q", "-p", plugin, paths=(plugin_dir,))
    assert result.returncode == 0, result.stdout + result.stderr
    ids = collected(result)
    assert_verdicts_last(ids)
    # The plugin did act: reversed, the benchmarks are not in pytest's own order.
    plain = [n for n in collected(run_pytest("--collect-only", "-q")) if "::test_inference[" in n]
    assert [n for n in ids if "::test_inference[" in n] != plain


def test_verdicts_last_under_the_floor_pytest_and_pytest_randomly(plugin_dir, floor_site, reorder_site):
    version = run_pytest("--version", paths=(floor_site,))
    assert f"pytest {floor_versions()['pytest']}" in version.stdout + version.stderr
    assert_verdicts_last(collected(run_pytest("--collect-only", "-q", "-p", "reverse_tryfirst",
                                              paths=(floor_site, plugin_dir))))
    for seed in ("1", "2", "3"):  # pytest-randomly loads itself from its entry point
        shuffled = run_pytest("--collect-only", "-q", "-p", "no:xdist", f"--randomly-seed={seed}",
                              paths=(reorder_site,))
        assert shuffled.returncode == 0, shuffled.stdout + shuffled.stderr
        assert_verdicts_last(collected(shuffled))


def test_parallel_runs_are_refused_in_one_line(reorder_site):
    result = run_pytest("-p", "no:randomly", "-n", "2", "--collect-only", paths=(reorder_site,))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "-n 2: cpubench does not run in parallel" in output and "Traceback" not in output


def test_parallel_runs_are_refused_only_where_they_reach_benches(tmp_path):
    """-n is refused for a run that reaches benches/ (make test runs tests/ itself under -n 2: that run is the
    end-to-end check that tests/ is let through)."""
    from types import SimpleNamespace

    from cpubench.plugin import reaches_benchmarks

    def config(*args: str, cwd: Path = REPO):
        return SimpleNamespace(rootpath=REPO, args=list(args), invocation_params=SimpleNamespace(dir=cwd))

    assert not reaches_benchmarks(config("tests"))
    assert not reaches_benchmarks(config("tests/test_gate.py::test_slowdown_is_read_from_the_environment"))
    assert not reaches_benchmarks(config("test_gate.py", cwd=REPO / "tests"))
    assert reaches_benchmarks(config("tests", "benches"))  # pytest.ini's testpaths, when no path is given
    assert reaches_benchmarks(config("benches/test_inference.py::test_inference"))
    assert reaches_benchmarks(config("."))
    assert reaches_benchmarks(config("..", cwd=REPO / "tests"))
    assert not reaches_benchmarks(config(str(tmp_path)))


# One worker process per variant (ONNX Runtime keeps its three): these runs check order and verdicts, not the spread
# between processes, and a second ResNet18 PyTorch worker costs 7-16 s to start on a Zen 3
# (docs/results_znver3_2026-12-03.md).
QUICK = ("--models", "resnet18", "--benchmark-max-time=0.1", "--benchmark-min-rounds=3", "--processes=1")


@pytest.mark.alone
def test_emptied_log_fails_the_gate_under_the_floor_pytest_in_reverse_order(plugin_dir, floor_site, emptied_logs,
                                                                           tmp_path):
    result = run_pytest(*QUICK, "--backends", "torch,onnxruntime,tvm-tuned", "--tuning-logs", str(emptied_logs),
                        "-p", "reverse_tryfirst", "--results-dir", str(tmp_path), paths=(floor_site, plugin_dir))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "pytest-8" in output or "pytest-" + floor_versions()["pytest"] in output
    assert "FAILED benches/test_ratio_gate.py::test_ratio_gate[resnet18]" in output, output
    assert "resnet18-tvm-tuned: no timing in this run" in output, output
    assert "has no record for" in output  # the build names the functions without a record


@pytest.mark.alone
def test_emptied_log_fails_the_gate_under_pytest_randomly(reorder_site, emptied_logs, tmp_path):
    result = run_pytest(*QUICK, "--backends", "torch,onnxruntime,tvm-tuned", "--tuning-logs", str(emptied_logs),
                        "-p", "no:xdist", "--randomly-seed=7", "--results-dir", str(tmp_path),
                        paths=(reorder_site,))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "FAILED benches/test_ratio_gate.py::test_ratio_gate[resnet18]" in output, output


@pytest.mark.alone
def test_gate_passes_and_says_what_it_used_under_the_floor_pytest(plugin_dir, floor_site, tmp_path):
    result = run_pytest(*QUICK, "--backends", "torch,onnxruntime", "-p", "reverse_tryfirst",
                        "--results-dir", str(tmp_path), paths=(floor_site, plugin_dir))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "passed" in output and "test_ratio_gate[resnet18] SKIPPED" not in output
    # Each variant's ratio with its interval, and its band's top with where the band came from.
    checked = r"gate resnet18: resnet18-torch \d+\.\d\d× \[\d+\.\d\d, \d+\.\d\d\] \(≤ [\d.]+x, [^)]+\)"
    assert re.search(checked, output), output


@pytest.mark.alone
@pytest.mark.parametrize("selection", [
    ("-k", "test_ratio_gate"),
    ("--deselect", "benches/test_inference.py::test_inference[resnet18-onnxruntime]"),
])
def test_a_blind_verdict_skips_and_names_what_it_lacked(selection, tmp_path):
    result = run_pytest(*QUICK, "--backends", "torch,onnxruntime", *selection, "-rs",
                        "--results-dir", str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"SKIPPED .*resnet18: the benchmark of [a-z, ]*onnxruntime[a-z, ]* is not in this run", output), \
        output
    assert "test_ratio_gate[resnet18] PASSED" not in output and "1 passed" not in output.split("\n")[-2]
