"""The yardstick: this CPU's own float32 limits, measured in the same interleaved rounds as the models.

- The peak (`cpu-peak`): independent chains of vector multiply-adds held in registers, compiled by LLVM (through
  TVM) for this CPU at the run's thread count. No BLAS build, environment variable or runtime under test can bend
  it; only the machine can. "Implausible" and ONNX Runtime's floor are measured against it.
- The best GEMM (`gemm-*`): 1024x1024 float32 matrix products in each installed library (numpy's BLAS, torch,
  ONNX Runtime's MLAS), each named with the kernel it ran. A library may run a kernel below the machine's best
  (`OPENBLAS_CORETYPE=Haswell` makes OpenBLAS run AVX2 code on an AVX-512 CPU), so the yardstick is the fastest of
  them, and the report names every one. Efficiency columns are against it.

Each runs in a worker of its own like a variant (the same load / prepare_inputs / forward interface); they are not
backends of a model, so they are not in the backend registry.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

PEAK = "cpu-peak"
GEMMS = ("gemm-numpy", "gemm-torch", "gemm-onnxruntime")
KERNELS = (PEAK, *GEMMS)
TORCH_FREE_KERNELS = (PEAK, "gemm-numpy", "gemm-onnxruntime")  # their workers never import torch
SIZE = 1024  # square float32 matrices: 2 x 1024^3 = 2.15 GFLOP a call, a few ms on the CPUs seen so far
GEMM_FLOPS = 2 * SIZE**3
# The peak kernel: CHAINS independent accumulators of `lanes` floats per thread, enough to cover the multiply-add
# latency (4-5 cycles) on two pipes. The lane count is the target's vector width where its ISA is known (ISA_LANES):
# 12 accumulators of it fit AVX2's 16 vector registers and AVX-512's 32, where 16 lanes on AVX2 need 24 registers
# and spill (half the rate on an AMD Zen 3). Timing the choice instead was fragile: beside variants building on the
# other core (--build-jobs 2) a Zen 3 was once given 16 lanes and a peak of 146 GFLOP/s against its 186-202.
CHAINS = 12
ISA_LANES = {"avx512": 16, "avx2": 8, "avx": 8}  # machine.vector_isa's names
# On any other ISA (SSE only, Arm, RISC-V) these are built and the fastest is kept. They are compared in calls of
# PEAK_CALL_SECONDS: in calls of a few microseconds the thread pool's wake-up dominates and the kernel doing more
# work a call looks faster.
LANE_CHOICES = (4, 8, 16)
PEAK_CALL_SECONDS = 0.002  # one call's length: short beside a 50 ms round, long beside the thread pool's wake-up
# A first call per lane count, only to size the calls that are compared: tens of microseconds of work, so the
# wake-up (about 20 us) makes the sized call no shorter than half of PEAK_CALL_SECONDS.
PROBE_ITERATIONS = 20000


class _Kernel:
    """What the worker needs of a yardstick kernel; `flops` per call and `kernel` (what ran) go into ctx.info."""

    name = ""
    precisions = ("fp32",)
    flops = 0

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return None

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float32).reshape(-1)[:8]

    def _describe(self, ctx: Any, kernel: str) -> None:
        ctx.info.update({"flops_per_call": self.flops, "kernel": kernel})


class PeakKernel(_Kernel):
    name = PEAK

    def __init__(self) -> None:
        self._fn = self._a = self._out = None

    def version(self) -> str:
        import tvm

        return f"LLVM through TVM {tvm.__version__}"

    def load(self, ctx: Any) -> None:
        import tvm

        from .tvm_support import set_runtime_threads

        set_runtime_threads(ctx.threads)  # else TVM's pool may run the parallel loop's iterations on one thread
        cpu = tvm.target.codegen.llvm_get_system_cpu()
        target = tvm.target.Target({"kind": "llvm", "mcpu": cpu, "num-cores": ctx.threads})
        isa = target_vector_isa(cpu)
        if isa in ISA_LANES:
            lanes = ISA_LANES[isa]
            self._fn, self._a, self._out, self.flops = self._sized(target, ctx.threads, lanes)
            why = f"{isa}'s width"
        else:
            kernels = {lanes: self._sized(target, ctx.threads, lanes) for lanes in LANE_CHOICES}
            # Compared call by call, alternating: the variants may be building beside this worker (--build-jobs),
            # and a load that comes and goes must fall on both choices alike.
            rates = _best_rates(kernels)
            lanes = max(rates, key=rates.__getitem__)
            self._fn, self._a, self._out, self.flops = kernels[lanes]
            why = f"the fastest on {isa}: " + ", ".join(f"{other} lanes {rates[other] / rates[lanes]:.0%} of it"
                                                       for other in LANE_CHOICES if other != lanes)
            ctx.info["lane_rates_gflops"] = {str(k): round(v / 1e9, 1) for k, v in rates.items()}
        self._describe(ctx, f"{CHAINS} chains of {lanes}-lane float32 multiply-adds per thread ({why}), "
                            f"LLVM -mcpu={cpu}")

    @classmethod
    def _sized(cls, target: Any, threads: int, lanes: int) -> tuple[Any, Any, Any, int]:
        """The kernel of `lanes` lanes built for a call of about PEAK_CALL_SECONDS at a probe's rate (which the
        wake-up lowers, so the call comes out no longer than that)."""
        probe = cls._build(target, threads, lanes, iterations=PROBE_ITERATIONS)
        rough = _best_rates({lanes: probe}, calls=10)[lanes]
        iterations = max(100, int(rough * PEAK_CALL_SECONDS / (2 * threads * CHAINS * lanes)))
        return cls._build(target, threads, lanes, iterations)

    @staticmethod
    def _build(target: Any, threads: int, lanes: int, iterations: int) -> tuple[Any, Any, Any, int]:
        import tvm
        from tvm.script import tirx as T

        size = threads * CHAINS * lanes

        @T.prim_func
        def peak(a: T.Buffer((size,), "float32"), out: T.Buffer((size,), "float32")):
            T.func_attr({"global_symbol": "peak", "tir.noalias": True})
            for t in T.parallel(threads):
                reg = T.alloc_buffer((CHAINS * lanes,), "float32", scope="local")
                for j in T.unroll(CHAINS):
                    for lane in T.vectorized(lanes):
                        reg[j * lanes + lane] = a[(t * CHAINS + j) * lanes + lane]
                for _ in T.serial(iterations):
                    for j in T.unroll(CHAINS):
                        for lane in T.vectorized(lanes):
                            reg[j * lanes + lane] = reg[j * lanes + lane] * T.float32(0.999999) + T.float32(1e-7)
                for j in T.unroll(CHAINS):
                    for lane in T.vectorized(lanes):
                        out[(t * CHAINS + j) * lanes + lane] = reg[j * lanes + lane]

        lib = tvm.compile(tvm.IRModule({"peak": peak}), target=target)
        device = tvm.cpu()
        a = tvm.runtime.tensor(np.ones(size, np.float32), device)
        out = tvm.runtime.tensor(np.zeros(size, np.float32), device)
        return lib["peak"], a, out, 2 * size * iterations

    def forward(self, inputs: Any) -> Any:
        self._fn(self._a, self._out)
        return self._out

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return outputs.numpy()[:8]


def target_vector_isa(cpu: str) -> str:
    """The vector ISA (machine.vector_isa's name) of the code LLVM makes for `cpu`, or `unknown`."""
    from .machine import cpu_profile

    try:
        profile = cpu_profile(cpu)
    except Exception:  # LLVM cannot describe it: the lane count is timed
        profile = None
    return profile.vector_isa if profile is not None else "unknown"


def _call_seconds(fn: Any, args: tuple) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _best_rates(kernels: dict[int, tuple[Any, Any, Any, int]], calls: int = 30) -> dict[int, float]:
    """FLOP/s of each built kernel (fn, a, out, flops) in its fastest of `calls` calls, the kernels' calls
    alternating."""
    for fn, a, out, _ in kernels.values():
        fn(a, out)
    best = dict.fromkeys(kernels, float("inf"))
    for _ in range(calls):
        for key, (fn, a, out, _) in kernels.items():
            best[key] = min(best[key], _call_seconds(fn, (a, out)))
    return {key: kernels[key][3] / best[key] for key in kernels}


class _Gemm(_Kernel):
    flops = GEMM_FLOPS

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self._a = rng.standard_normal((SIZE, SIZE), dtype=np.float32)
        self._b = rng.standard_normal((SIZE, SIZE), dtype=np.float32)


class NumpyGemm(_Gemm):
    name = "gemm-numpy"

    def version(self) -> str:
        return f"numpy {np.__version__}"

    def load(self, ctx: Any) -> None:
        self._out = np.empty((SIZE, SIZE), dtype=np.float32)
        self._limits = None
        kernel = "numpy's BLAS"
        try:
            from threadpoolctl import threadpool_info, threadpool_limits

            # The run's thread count, as every backend gets; the BLAS's own choice of kernel is left as it is.
            self._limits = threadpool_limits(ctx.threads, user_api="blas")
            blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
            if blas:
                p = blas[0]
                kernel = (f"{p.get('internal_api', '?')} {p.get('version') or ''} "
                          f"{p.get('architecture') or '?'} kernel, {p.get('num_threads')} threads").replace("  ", " ")
        except ImportError:
            pass
        self._describe(ctx, f"numpy matmul, {kernel}")

    def forward(self, inputs: Any) -> Any:
        return np.matmul(self._a, self._b, out=self._out)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.asarray(outputs[:1, :8], dtype=np.float32).reshape(-1)


class TorchGemm(_Gemm):
    name = "gemm-torch"

    def version(self) -> str:
        import torch

        return f"torch {torch.__version__}"

    def load(self, ctx: Any) -> None:
        import torch

        torch.set_num_threads(ctx.threads)
        self._ta, self._tb = torch.from_numpy(self._a), torch.from_numpy(self._b)
        self._tout = torch.empty((SIZE, SIZE), dtype=torch.float32)
        library = "MKL" if torch.backends.mkl.is_available() else "its BLAS"
        self._describe(ctx, f"torch.mm through {library}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
                            f"{torch.get_num_threads()} threads")

    def forward(self, inputs: Any) -> Any:
        import torch

        return torch.mm(self._ta, self._tb, out=self._tout)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return outputs[:1, :8].numpy().reshape(-1)


class OnnxRuntimeGemm(_Gemm):
    name = "gemm-onnxruntime"

    def version(self) -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"

    def load(self, ctx: Any) -> None:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [SIZE, SIZE]) for n in ("a", "b")],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [SIZE, SIZE])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = min(model.ir_version, 9)
        options = ort.SessionOptions()
        options.intra_op_num_threads = ctx.threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self._feed = {"a": self._a, "b": self._b}
        self._describe(ctx, f"ONNX Runtime MatMul (MLAS, dispatched on the CPU's features), {ctx.threads} threads")

    def forward(self, inputs: Any) -> Any:
        return self._session.run(None, self._feed)[0]

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return np.asarray(outputs[:1, :8], dtype=np.float32).reshape(-1)


def create(name: str) -> _Kernel:
    kernels = {PEAK: PeakKernel, "gemm-numpy": NumpyGemm, "gemm-torch": TorchGemm,
               "gemm-onnxruntime": OnnxRuntimeGemm}
    return kernels[name]()


def rate_gflops(flops_per_call: int, rounds: dict[int, float]) -> tuple[float, float, float]:
    """A kernel's rate in GFLOP/s with its interval (the faster end of time is the higher rate)."""
    from .stats import median_interval

    median, low, high = median_interval(list(rounds.values()))
    return flops_per_call / median / 1e9, flops_per_call / high / 1e9, flops_per_call / low / 1e9


def peak_share(variant_rounds: dict[int, float], peak_rounds: dict[int, float], peak_flops: int,
               model_flops: int) -> Any:
    """The variant's share of this CPU's float32 peak, per rotation (its round against the peak kernel's round of
    the same rotation), then the median with its interval: a Ratio, 1.0 meaning every cycle of every core did its
    widest multiply-adds for the model."""
    from .results import Ratio
    from .schedule import paired
    from .stats import median_interval

    # the variant's round over the peak kernel's round of the same rotation: how many peak calls one call costs
    shares = [model_flops / peak_flops / ratio for ratio in paired(variant_rounds, peak_rounds).values() if ratio > 0]
    if not shares:
        return None
    return Ratio(*median_interval(shares), pairs=len(shares))
