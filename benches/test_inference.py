"""Inference latency of every selected model in every selected backend, timed by pytest-benchmark."""

from __future__ import annotations

from cpubench.plugin import load_backend, record_benchmark


def test_inference(benchmark, suite, model_name, backend_name):
    loaded = load_backend(suite, model_name, backend_name)  # built, inputs ready: nothing of this is timed
    benchmark.group = model_name
    benchmark(loaded.backend.forward, loaded.inputs)
    record_benchmark(suite, benchmark, loaded)
