"""Damaged cache entries are rebuilt with one line of notice, never trusted and never fatal (a truncated `.so`
used to kill pytest with a bus error, a truncated `.onnx` gave a raw InvalidProtobuf traceback)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cpubench import cache

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A cache in tmp_path and an empty notice list (this session's summary stays free of the tests' notices)."""
    monkeypatch.setenv("CPUBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "NOTICES", [])
    return tmp_path / "cache"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": (truncate, "digest mismatch"),
    "flipped byte": (flip_byte, "digest mismatch"),
    "garbage json": (lambda p: p.write_text("{not json"), "digest mismatch"),
    "no sidecar": (lambda p: cache.sidecar_path(p).unlink(), cache.NO_SIDECAR),
    "garbled sidecar": (lambda p: cache.sidecar_path(p).write_text("zzz\n"), "garbled digest sidecar"),
}


def test_written_entry_is_intact(fresh):
    path = cache.cached_path("unit", "entry", ".json")
    cache.write_entry(path, b'{"a": 1}')
    assert cache.is_intact(path) and cache.usable_entry(path)
    digest = hashlib.sha256(b'{"a": 1}').hexdigest()
    assert cache.sidecar_path(path).read_text() == f"{digest}  {path.name}\n"  # `sha256sum -c` format
    assert sorted(p.name for p in path.parent.iterdir()) == ["entry.json", "entry.json.sha256"]  # no temp files
    assert cache.NOTICES == []


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_entry_is_removed_with_one_notice(fresh, damage, capsys):
    path = cache.cached_path("unit", "entry", ".json")
    cache.write_entry(path, json.dumps({"payload": list(range(100))}).encode())
    spoil, reason = DAMAGE[damage]
    spoil(path)
    assert not cache.is_intact(path)
    assert cache.entry_problem(path) == reason
    assert cache.usable_entry(path) is False
    assert not path.exists() and not cache.sidecar_path(path).exists()
    assert len(cache.NOTICES) == 1
    notice = cache.NOTICES[0]
    assert notice.startswith(f"cpubench: cache entry {path}") and notice.endswith(f"({reason}); rebuilding it")
    assert capsys.readouterr().err == notice + "\n"  # said at once, on stderr
    cache.write_entry(path, b"{}")  # the rebuild
    assert cache.usable_entry(path) and len(cache.NOTICES) == 1


def test_absent_entry_is_quietly_unusable_and_orphan_digest_removed(fresh, capsys):
    path = cache.cached_path("unit", "gone", ".onnx")
    assert cache.entry_problem(path) == cache.MISSING
    cache.sidecar_path(path).write_text("0" * 64 + "  gone.onnx\n")
    assert cache.usable_entry(path) is False
    assert not cache.sidecar_path(path).exists()
    assert cache.NOTICES == [] and capsys.readouterr().err == ""


def test_seal_makes_a_foreign_file_a_verified_entry(fresh):
    path = cache.cached_path("unit", "lib", ".so")
    path.write_bytes(b"\x7fELF written by another library")
    assert cache.entry_problem(path) == cache.NO_SIDECAR  # unverified: an older cache is rebuilt once
    cache.seal_entry(path)
    assert cache.is_intact(path)
    with path.open("ab") as fh:
        fh.write(b"more")
    assert cache.entry_problem(path) == "digest mismatch"


def test_tvm_info_that_is_not_a_json_object_is_rebuilt(fresh):
    from cpubench.cache import cached_build_info

    lib = cache.cached_path("tvm", "tiny", ".so")
    info = lib.with_suffix(".json")
    cache.write_entry(lib, b"library")
    cache.write_entry(info, b'{"tuning_coverage": "3/3 tuned functions"}')
    assert cached_build_info(lib, info) == {"tuning_coverage": "3/3 tuned functions"}
    cache.write_entry(info, b"[garbage")  # intact by its digest, but not what was meant to be there
    assert cached_build_info(lib, info) is None
    assert not info.exists() and cache.NOTICES[-1].endswith("(not a JSON object); rebuilding it")
    cache.write_entry(info, b"{}")
    truncate(lib)
    assert cached_build_info(lib, info) is None  # a pair: either one damaged means rebuild
    assert not lib.exists() and "digest mismatch" in cache.NOTICES[-1]


def test_session_summary_repeats_the_notices(monkeypatch):
    from cpubench.plugin import pytest_terminal_summary

    monkeypatch.setattr(cache, "NOTICES", ["cpubench: cache entry x.so was damaged (digest mismatch); rebuilding it"])
    lines = []
    reporter = SimpleNamespace(write_line=lambda line, **_: lines.append(line))
    pytest_terminal_summary(reporter, 0, SimpleNamespace(stash={}))
    assert lines == cache.NOTICES


# End to end, in a subprocess each: a bus error would show as a crash there instead of killing this pytest.
LOAD_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, "tests")
from tiny import TINY_SHAPE, tiny_model
from cpubench.backends import LoadContext, create_backend
from cpubench.onnx_export import export_onnx

model = tiny_model()
onnx_path = export_onnx(model)
x = np.random.default_rng(0).standard_normal(TINY_SHAPE).astype(np.float32)
out = {}
for name in sys.argv[1:]:
    backend = create_backend(name)
    backend.load(LoadContext(model=model, onnx_path=onnx_path, threads=1, tuning_logs=Path("tuning_logs")))
    out[name] = backend.to_numpy(backend.forward(backend.prepare_inputs(x))).tolist()
print(json.dumps(out))
"""


def load_in_subprocess(cache_dir: Path, *backends: str) -> tuple[dict[str, np.ndarray], str]:
    env = {**os.environ, "CPUBENCH_CACHE": str(cache_dir)}
    result = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, *backends], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    logits = json.loads(result.stdout.strip().splitlines()[-1])
    return {k: np.asarray(v, dtype=np.float32) for k, v in logits.items()}, result.stderr


def expected_logits() -> np.ndarray:
    import torch
    from tiny import TINY_SHAPE, tiny_model

    x = np.random.default_rng(0).standard_normal(TINY_SHAPE).astype(np.float32)
    with torch.no_grad():
        return tiny_model().module(torch.from_numpy(x)).numpy()


def notices_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("cpubench: cache entry")]


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory) -> Path:
    """A cache holding the tiny model's ONNX export and its untuned TVM build (seconds to compile)."""
    cache_dir = tmp_path_factory.mktemp("built") / "cache"
    logits, stderr = load_in_subprocess(cache_dir, "tvm")
    assert notices_in(stderr) == []
    np.testing.assert_allclose(logits["tvm"], expected_logits(), rtol=1e-4, atol=1e-5)
    return cache_dir


def only(cache_dir: Path, pattern: str) -> Path:
    (path,) = cache_dir.glob(pattern)
    return path


@pytest.mark.parametrize(("entry", "spoil", "backends"), [
    ("tvm/*.so", truncate, ("tvm",)),
    ("tvm/*.json", lambda p: p.write_text("garbage {"), ("tvm",)),
    ("onnx/*.onnx", truncate, ("onnxruntime", "tvm")),
], ids=["truncated-so", "garbage-json", "truncated-onnx"])
def test_damaged_cache_is_rebuilt_end_to_end(built_cache, tmp_path, entry, spoil, backends):
    cache_dir = tmp_path / "cache"
    shutil.copytree(built_cache, cache_dir)
    damaged = only(cache_dir, entry)
    spoil(damaged)
    logits, stderr = load_in_subprocess(cache_dir, *backends)
    assert notices_in(stderr) == [f"cpubench: cache entry {damaged} was damaged (digest mismatch); rebuilding it"]
    for name in backends:
        np.testing.assert_allclose(logits[name], expected_logits(), rtol=1e-4, atol=1e-5)
    for path in (only(cache_dir, "tvm/*.so"), only(cache_dir, "tvm/*.json"), only(cache_dir, "onnx/*.onnx")):
        assert cache.is_intact(path), path
    _, stderr = load_in_subprocess(cache_dir, *backends)  # and the rebuilt cache is trusted again
    assert notices_in(stderr) == []
