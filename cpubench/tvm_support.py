"""Apache TVM (Relax + MetaSchedule) plumbing shared by the TVM backends and the tuner.

TVM 0.25+ has neither Relay nor AutoTVM. The blog post's `autotvm.apply_graph_best(log)` becomes: lower the
Relax module to TIR, then `MetaScheduleApplyDatabase` inside a `JSONDatabase` context; this module does
both, and checks that every tunable function found a record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import winograd
from .cache import seal_entry, sidecar_path
from .errors import UsageError
from .machine import llvm_cpu, log_key

DB_FILES = ("database_workload.json", "database_tuning_record.json")
METADATA_FILE = "metadata.json"
SCHEDULED_ATTR = "tirx.is_scheduled"


def host_cpu() -> str:
    """This CPU's LLVM name (`znver4`); `machine` decides it."""
    return llvm_cpu()


def host_target(threads: int, cpu: str | None = None) -> Any:
    """The LLVM target for this CPU (or for `cpu`, an LLVM CPU name such as `x86-64-v3`); `num-cores` is what
    MetaSchedule and the runtime parallelise over."""
    import tvm

    return tvm.target.Target({"kind": "llvm", "mcpu": cpu or host_cpu(), "num-cores": int(threads)})


def target_key(target: Any, batch_size: int = 1) -> str:
    """Folder name under tuning_logs/<model>/: CPU name and core count, e.g. `znver4-2c`; `-b4` for batch 4
    (another batch size is another set of workloads)."""
    attrs = target.attrs
    return log_key(str(attrs.get("mcpu", "generic")), int(attrs.get("num-cores", 1)), batch_size)


def set_runtime_threads(threads: int) -> None:
    """TVM's thread pool reads TVM_NUM_THREADS when it starts; set it and reconfigure a running pool."""
    os.environ["TVM_NUM_THREADS"] = str(threads)
    import tvm

    config = tvm.get_global_func("runtime.config_threadpool", allow_missing=True)
    if config is not None:
        config(1, threads)  # 1 = big cores (all cores on this kind of machine)


@contextlib.contextmanager
def clip_as_relax_op() -> Iterator[None]:
    """While importing, turn ONNX `Clip` with constant scalar bounds (ReLU6 in EfficientNet) into Relax's own
    elementwise ops: `relax.op.maximum` with the lower bound, then `relax.op.minimum` with the upper one (an
    infinite bound is left out).

    TVM's importer emits Clip as two opaque TIR calls (topi maximum/minimum) that layout conversion cannot
    see through: every activation of an NHWC model then gets a transpose on each side, and cannot fuse into
    the convolution before it. Relax's maximum and minimum convert and fuse like any elementwise op. A Clip
    whose bounds are not scalar constants keeps the importer's conversion.
    """
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import onnx_frontend

    original = onnx_frontend.Clip._impl_v13

    def bound(expr: Any) -> float | None:
        if isinstance(expr, tvm.ir.expr.Constant) and expr.value.numpy().size == 1:
            return float(expr.value.numpy().reshape(()))
        return None

    def impl(cls, bb, inputs, attr, params):
        lo = bound(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else float("-inf")
        hi = bound(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else float("inf")
        if lo is None or hi is None:
            return original.__func__(cls, bb, inputs, attr, params)
        out, dtype = inputs[0], inputs[0].ty.dtype
        if lo != float("-inf"):
            out = relax.op.maximum(out, relax.const(lo, dtype))
        if hi != float("inf"):
            out = relax.op.minimum(out, relax.const(hi, dtype))
        return out

    onnx_frontend.Clip._impl_v13 = classmethod(impl)
    try:
        yield
    finally:
        onnx_frontend.Clip._impl_v13 = original


def import_tensor_intrinsics(target: Any) -> None:
    """Register the tensor intrinsics a CPU target's schedule rules may use (x86's VNNI and AMX dot products), before
    MetaSchedule's TuneContext imports `tvm.s_tir.tensor_intrin`: that package registers every GPU's too, 26 s of
    CPU in each process that tunes (cuda alone 15 s), none of which an x86 schedule can use. The package is made
    importable without its __init__, and only x86's module is run. Any other target gets the whole package."""
    import importlib
    import importlib.util
    import platform
    import sys
    import types

    name = "tvm.s_tir.tensor_intrin"
    triple = str(target.attrs.get("mtriple", "")) or platform.machine()  # no triple: code for this machine
    if name in sys.modules or str(target.kind.name) != "llvm" or not triple.startswith(("x86_64", "AMD64")):
        importlib.import_module(name)
        return
    spec = importlib.util.find_spec(name)
    package = types.ModuleType(name, "Tensor intrinsics for x86 CPUs only (cpubench.tvm_support)")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__package__ = name
    sys.modules[name] = package
    try:
        importlib.import_module(f"{name}.x86")
    except BaseException:
        del sys.modules[name]
        raise


def import_onnx(onnx_path: Path, input_shape: tuple[int, ...], input_name: str = "input") -> Any:
    """Relax module from the ONNX file, weights bound as constants so that weight-only work folds away."""
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    with clip_as_relax_op():
        return from_onnx(onnx.load(str(onnx_path)), shape_dict={input_name: list(input_shape)})


def lower_for_tuning(mod: Any, target: Any, lowering: str = winograd.DIRECT) -> Any:
    """Relax graph -> fused TIR functions, the form whose functions MetaSchedule tunes and applies records to.

    Convolutions run in NHWC: the channel axis is innermost, which is what the CPU's vector units need and
    what MetaSchedule's tiling finds fast schedules for. Weights are marked layout-free so a tuned schedule may
    repack them; the repacking runs once, at compile time, on the constant weights (see `finish_tuned`).
    `lowering` "winograd" turns 3x3 stride-1 convolutions into Winograd transforms (see winograd.py); a log's
    records only fit the lowering it was tuned with (`log_lowering`).
    """
    import tvm
    from tvm import relax

    if lowering not in winograd.LOWERINGS:
        raise UsageError(f"unknown convolution lowering {lowering!r}; expected one of {', '.join(winograd.LOWERINGS)}")
    layout = [
        relax.transform.DecomposeOpsForInference(),
        relax.transform.CanonicalizeBindings(),
        relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}),
    ]
    rest = [relax.get_pipeline("zero"), relax.transform.AttachAttrLayoutFreeBuffers()]
    with target:
        if lowering == winograd.DIRECT:
            return tvm.transform.Sequential(layout + rest)(mod)
        winograd.register_schedule_rules()
        # The weights must be constants in OHWI for the rewrite: fold ConvertLayout's weight transposes first.
        folded = tvm.transform.Sequential([*layout, relax.transform.FoldConstant()])(mod)
        return tvm.transform.Sequential(rest)(winograd.rewrite(folded))


def log_lowering(log_dir: Path) -> str:
    """The convolution lowering a stored log was tuned with (`lowering` in its metadata.json; logs without it
    were tuned on direct convolutions)."""
    meta = log_dir / METADATA_FILE
    if not meta.is_file():
        return winograd.DIRECT
    try:
        metadata = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"tuning log metadata {meta} is corrupt ({exc}); regenerate it with `pytest -m tune`") \
            from None
    return lowering_of(metadata, meta)


def lowering_of(metadata: Any, meta: Path) -> str:
    """`lowering` of a log's parsed metadata.json (`meta`, named in the error), `direct` when it has none."""
    lowering = metadata.get("lowering", winograd.DIRECT) if isinstance(metadata, dict) else None
    if lowering not in winograd.LOWERINGS:
        raise UsageError(f"tuning log metadata {meta}: unknown lowering {lowering!r} (this version knows "
                         f"{', '.join(winograd.LOWERINGS)}); regenerate it with `pytest -m tune`")
    return lowering


def tunable_functions(lowered: Any) -> list[str]:
    """Names of the TIR functions MetaSchedule would tune (those not scheduled already)."""
    import tvm

    names = []
    for gv, func in lowered.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc) and not (func.attrs and func.attrs.get(SCHEDULED_ATTR, False)):
            names.append(gv.name_hint)
    return sorted(names)


def check_database_files(log_dir: Path) -> None:
    """Fail with the file's name when a tuning log is missing, unreadable or not JSON lines."""
    for name in DB_FILES:
        path = log_dir / name
        if not path.is_file():
            raise UsageError(f"tuning log {path} is missing; regenerate it with `pytest -m tune`")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"tuning log {path} cannot be read ({exc}); regenerate it with `pytest -m tune`") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"tuning log {path} is corrupt at line {number} ({exc.msg}); "
                                 "restore it from git or regenerate it with `pytest -m tune`") from None


def open_database(log_dir: Path) -> Any:
    from tvm.s_tir import meta_schedule as ms

    check_database_files(log_dir)
    try:
        return ms.database.JSONDatabase(work_dir=str(log_dir), allow_missing=False)
    except Exception as exc:  # TVM raises its own error types from C++
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"tuning log in {log_dir} cannot be loaded by TVM ({first}); "
                         "regenerate it with `pytest -m tune`") from None


def database_digest(log_dir: Path) -> str:
    h = hashlib.sha256()
    for name in DB_FILES:
        h.update((log_dir / name).read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Coverage:
    """Which tunable functions of a model found a tuning record."""

    tunable: list[str]
    missing: list[str] = field(default_factory=list)

    @property
    def covered(self) -> int:
        return len(self.tunable) - len(self.missing)

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        return f"{self.covered}/{len(self.tunable)} tuned functions"


def apply_database(lowered: Any, target: Any, database: Any) -> tuple[Any, Coverage]:
    """Apply the stored best schedules (today's `apply_graph_best`) and report what found no record."""
    from tvm import relax

    tunable = tunable_functions(lowered)
    with target, database:
        applied = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(lowered)
    still_unscheduled = set(tunable_functions(applied))
    return applied, Coverage(tunable=tunable, missing=sorted(n for n in tunable if n in still_unscheduled))


def finish_tuned(applied: Any, target: Any) -> Any:
    """Move the weight repacking that tuned schedules asked for out of the hot path: fold it into constants."""
    import tvm
    from tvm import relax

    with target:
        return tvm.transform.Sequential([
            relax.transform.SplitLayoutRewritePreproc(),
            relax.transform.FoldConstant(),
        ])(applied)


def compile_module(mod: Any, target: Any, out_path: Path, seal: bool = True) -> None:
    """Compile a Relax module and export it as a shared library at `out_path`: written atomically, then sealed
    with its digest (see cache.py), so a truncated library is rebuilt rather than mmapped into a bus error.
    `seal=False` for a throwaway library that is deleted after use (no `.sha256` left behind)."""
    import tvm

    executable = tvm.compile(mod, target=target)
    tmp = out_path.with_name(f".{out_path.name}.tmp{os.getpid()}.so")
    try:
        executable.export_library(str(tmp))
        sidecar_path(out_path).unlink(missing_ok=True)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if seal:
        seal_entry(out_path)  # only now is the library complete and in place


def build_tuned(lowered: Any, target: Any, log_dir: Path, lib_path: Path, seal: bool = True) -> Coverage:
    """The tuned model as `tvm-tuned` runs it, for the backend and the tuner alike: the log's best schedules
    applied to `lowered` (from `lower_for_tuning`), weight repacking folded, compiled into `lib_path`.

    Nothing is compiled when a tunable function has no record in the log: a 'tuned' library with untuned
    functions would not be a tuned number. The returned coverage says which functions those are; the caller
    decides how to say it. `seal` as in `compile_module`."""
    applied, coverage = apply_database(lowered, target, open_database(log_dir))
    if coverage.complete:
        compile_module(finish_tuned(applied, target), target, lib_path, seal=seal)
    return coverage


def load_vm(lib_path: Path) -> Any:
    import tvm
    from tvm import relax

    return relax.VirtualMachine(tvm.runtime.load_module(str(lib_path)), tvm.cpu())


def to_numpy(value: Any) -> Any:
    import numpy as np

    if isinstance(value, (list, tuple)) or type(value).__name__ == "Array":
        value = value[0]
    return np.asarray(value.numpy(), dtype=np.float32)
