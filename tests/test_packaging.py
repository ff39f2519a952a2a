"""The wheel `pip install .` builds: every package and module under cpubench/, found by walking the source tree, and
the data files the package reads at run time. An editable install (what `make` does) never shows a package left
out of the wheel, so this builds the real thing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "cpubench"
# What the build must not see: local state, caches and earlier builds (a stale build/lib would hide a missing file).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".cache", ".benchmarks", "results", "build", "dist", "*.egg-info",
                                    "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    """The names in a wheel built from a copy of the tree (an in-tree build would leave build/ and egg-info behind),
    with the environment's setuptools and no network: `pip wheel --no-deps --no-build-isolation`."""
    pytest.importorskip("setuptools", minversion="77", reason="building the wheel needs setuptools>=77 (pyproject)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO_ROOT, src, ignore=NOT_SOURCE)
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-cache-dir", "--quiet", "-w", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list(out.glob(f"{PACKAGE}-*.whl"))
    assert len(wheels) == 1, f"expected one wheel, found {[w.name for w in out.iterdir()]}"
    with zipfile.ZipFile(wheels[0]) as zf:
        return set(zf.namelist())


def source_files(suffix: str = ".py") -> list[str]:
    """Every file with `suffix` under cpubench/ in the source tree, as the wheel names it (`cpubench/x/y.py`)."""
    root = REPO_ROOT / PACKAGE
    return sorted(p.relative_to(REPO_ROOT).as_posix() for p in root.rglob(f"*{suffix}")
                  if "__pycache__" not in p.parts)


def test_every_package_is_in_the_wheel(wheel_names):
    packages = sorted(p.parent.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / PACKAGE).rglob("__init__.py")
                      if "__pycache__" not in p.parts)
    assert f"{PACKAGE}" in packages and f"{PACKAGE}/backends" in packages and f"{PACKAGE}/sources" in packages
    missing = [pkg.replace("/", ".") for pkg in packages if f"{pkg}/__init__.py" not in wheel_names]
    assert not missing, f"packages left out of the wheel: {missing}"


def test_every_module_is_in_the_wheel(wheel_names):
    modules = source_files(".py")
    assert f"{PACKAGE}/plugin.py" in modules
    missing = [m for m in modules if m not in wheel_names]
    assert not missing, f"modules left out of the wheel: {missing}"


def test_the_wheel_holds_only_the_package(wheel_names):
    """Package discovery finds cpubench* only: no tests/, benches/ or other top-level names in site-packages."""
    top = {name.split("/", 1)[0] for name in wheel_names}
    stray = sorted(t for t in top if t != PACKAGE and not t.endswith((".dist-info", ".data")))
    assert not stray, f"the wheel would install these top-level names too: {stray}"
    assert not [n for n in wheel_names if "__pycache__" in n or n.endswith(".pyc")]


def runtime_data_files() -> list[Path]:
    """The files cpubench reads from its own location at run time: the default photo, the ImageNet class names and the
    int8 calibration and evaluation photos."""
    from cpubench import images, quantize

    return [images.DEFAULT_IMAGE, images.CLASSES_FILE, *quantize.CALIBRATION_PHOTOS, *quantize.EVALUATION_PHOTOS]


def test_runtime_data_is_in_the_wheel(wheel_names):
    import cpubench

    package_dir = Path(cpubench.__file__).resolve().parent
    files = runtime_data_files()
    assert all(f.is_file() for f in files), f"the source tree lacks {[str(f) for f in files if not f.is_file()]}"
    outside = [str(f) for f in files if not f.is_relative_to(package_dir)]
    assert not outside, f"read at run time from outside the package, so no install carries them: {outside}"
    missing = [f"{PACKAGE}/{f.relative_to(package_dir).as_posix()}" for f in files]
    missing = [m for m in missing if m not in wheel_names]
    assert not missing, f"runtime data left out of the wheel: {missing}"
