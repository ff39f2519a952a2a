"""The install's last line and CI's check: each runtime imported in a fresh process, a missing one named with why."""

from __future__ import annotations

import pytest

from cpubench import runtimes


@pytest.fixture
def fake_runtimes(monkeypatch):
    monkeypatch.setattr(runtimes, "RUNTIMES", {"numpy": (("numpy",), "numpy"),
                                               "ghost": (("no_such_module_cpubench",), "ghost-runtime")})


def test_present_and_missing_runtimes_each_get_their_word(fake_runtimes, capsys):
    assert runtimes.main([]) == 0  # nothing required: the line only reports
    line = capsys.readouterr().out.strip()
    assert line.startswith("runtimes: numpy ")
    assert "ghost MISSING (ModuleNotFoundError: No module named 'no_such_module_cpubench')" in line


def test_a_required_missing_runtime_fails(fake_runtimes, capsys):
    assert runtimes.main(["--require", "numpy,ghost"]) == 1
    assert "required runtimes missing: ghost" in capsys.readouterr().err
    assert runtimes.main(["--require", "numpy"]) == 0


def test_require_all_covers_every_backend_runtime():
    from cpubench.backends import BACKENDS

    runtime_of = {"torch": "torch", "torch-compile": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino",
                  "executorch": "executorch", "litert": "litert", "tvm": "tvm", "tvm-tuned": "tvm"}
    assert set(runtime_of) == set(BACKENDS)
    assert set(runtime_of.values()) <= set(runtimes.RUNTIMES)
