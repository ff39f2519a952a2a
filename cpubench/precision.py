"""The precision axis: which numeric precision a backend computes in, beside which backend it is.

A variant is (model, backend, precision). Its key is the backend's name for float32 (`openvino`, so today's test
ids stay as they are) and `backend-precision` otherwise (`openvino-bf16`): test ids, report rows and the gate's
ratios all use that key. Float32 is enforced wherever a runtime would pick less on its own (OpenVINO runs bf16 on
AMX unless told); bf16 runs only where both the CPU and the backend have it, and is skipped with the reason
elsewhere. int8 is static quantization (cpubench/quantize.py); every x86 CPU runs it, faster with VNNI or AMX.
"""

from __future__ import annotations

from dataclasses import dataclass

from .machine import cpu_flags

PRECISIONS = ("fp32", "bf16", "int8")
DEFAULT_PRECISION = "fp32"
# CPU flags (as /proc/cpuinfo spells them) that execute bfloat16 arithmetic natively.
BF16_CPU_FLAGS = {"x86_64": ("avx512_bf16", "amx_bf16"), "aarch64": ("bf16",)}


@dataclass(frozen=True)
class Variant:
    backend: str
    precision: str = DEFAULT_PRECISION

    @property
    def key(self) -> str:
        return self.backend if self.precision == DEFAULT_PRECISION else f"{self.backend}-{self.precision}"

    @classmethod
    def parse(cls, key: str) -> Variant:
        for precision in PRECISIONS:
            if precision != DEFAULT_PRECISION and key.endswith(f"-{precision}"):
                return cls(key[: -len(precision) - 1], precision)
        return cls(key)


def variant_keys(backends: tuple[str, ...] | list[str], precisions: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Every (backend, precision) key, backend-major: `torch, torch-bf16, onnxruntime, ...`."""
    return tuple(Variant(b, p).key for b in backends for p in precisions)


def cpu_lacks(precision: str) -> str | None:
    """Why this CPU cannot run `precision` natively, or None when it can."""
    if precision != "bf16":
        return None
    import platform

    wanted = BF16_CPU_FLAGS.get(platform.machine(), ())
    if any(flag in cpu_flags() for flag in wanted):  # looked up here at call time: tests replace it
        return None
    return (f"this CPU has no native bfloat16 ({' or '.join(wanted) or 'no known flag'} missing from "
            "/proc/cpuinfo); bf16 would be emulated and slower than fp32, so it is not benchmarked")
