"""What a user sees for bad options and files: a one-line error naming the option or file, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from child import pytest_env

REPO = Path(__file__).resolve().parent.parent


def run_pytest(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "benches", "-p", "no:cacheprovider", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, env=pytest_env())


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--models", "resnet18,vgg", "--models: unknown model 'vgg'; valid models: resnet18, efficientnet_lite0"),
    ("--backends", "tvm,tensorrt",
     "unknown backend 'tensorrt'; valid backends: torch, torch-compile, onnxruntime, openvino, executorch, "
     "litert, tvm, tvm-tuned"),
    ("--precision", "fp32,int4", "--precision: unknown precision 'int4'; valid precisions: fp32, bf16"),
    ("--tuning-log", "no-such-log-9c", "--tuning-log no-such-log-9c: no such log for resnet18"),
    ("--threads", "0", "expected a positive integer, got 0"),
    ("--batch-size", "two", "expected a positive integer, got 'two'"),
    ("--image", "no/such/photo.jpg", "--image: no such file: no/such/photo.jpg"),
    ("--weights", "missing.pth", "--weights: no such file: missing.pth"),
    ("--rpc-tracker", "localhost", "expected HOST:PORT, got 'localhost'"),
])
def test_bad_option_fails_at_start_up_without_traceback(option, value, expected):
    result = run_pytest(option, value, "--collect-only")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected in output
    assert "Traceback" not in output


def test_tuning_log_options_contradict():
    result = run_pytest("--tuning-log", "znver4-2c", "--tuning-log-exact", "--collect-only")
    assert result.returncode != 0
    assert "--tuning-log and --tuning-log-exact contradict each other" in result.stderr + result.stdout


def test_precision_ids_keep_fp32_as_before():
    result = run_pytest("--collect-only", "-q", "--precision", "fp32,bf16", "--models", "resnet18")
    assert "test_inference[resnet18-openvino]" in result.stdout
    assert "test_inference[resnet18-openvino-bf16]" in result.stdout
    assert "test_inference[resnet18-torch-compile-bf16]" in result.stdout


def test_rpc_options_go_together():
    result = run_pytest("--rpc-key", "board", "--collect-only")
    assert result.returncode != 0
    assert "--rpc-tracker and --rpc-key go together" in result.stderr + result.stdout


def test_ids_are_model_then_backend():
    result = run_pytest("--collect-only", "-q")
    assert "test_inference[resnet18-onnxruntime]" in result.stdout
    assert "test_inference[efficientnet_lite0-tvm-tuned]" in result.stdout
    assert "test_tune" not in result.stdout  # opt-in only


def test_tune_marker_selects_only_tuning():
    result = run_pytest("--collect-only", "-q", "-m", "tune", "--models", "resnet18")
    assert "test_tune[resnet18]" in result.stdout
    assert "test_inference" not in result.stdout


@pytest.mark.parametrize(("option", "name", "content", "expected"), [
    ("--weights", "resnet18-broken.pth", b"this is not a checkpoint", "is not a readable PyTorch checkpoint"),
    ("--image", "photo.jpg", b"\xff\xd8 not really a jpeg", "is not a readable image"),
])
def test_unreadable_file_fails_the_run_naming_the_file(tmp_path, option, name, content, expected):
    bad = tmp_path / name
    bad.write_bytes(content)
    result = run_pytest("--models", "resnet18", "--backends", "torch", option, str(bad),
                        "--benchmark-disable", "-k", "test_inference")
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"{option}: {bad} {expected}" in output
    assert "Traceback" not in output
