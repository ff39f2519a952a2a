"""Inference latency of every selected model in every selected variant: each built in its own worker process,
the variants of every model timed together in interleaved rounds, the rounds handed to pytest-benchmark."""

from __future__ import annotations

from cpubench.plugin import build_variant, record_benchmark, timed_rounds


def test_inference(benchmark, suite, model_name, variant, request):
    built = build_variant(suite, model_name, variant, benchmark, request.config)  # in its worker: nothing timed yet
    benchmark.group = model_name
    rounds = timed_rounds(request.config, suite, benchmark, model_name, variant)
    record_benchmark(suite, benchmark, built, rounds)
