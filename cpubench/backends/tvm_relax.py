"""Apache TVM backends: `tvm` compiles the ONNX export with Relax as is; `tvm-tuned` applies the stored
MetaSchedule database for this model and this CPU at compile time, and refuses to build if it does not cover
every tunable function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import tvm_support as tv
from ..cache import cached_path, content_key
from ..errors import UsageError
from . import BackendUnavailable, LoadContext

RETUNE_HINT = "pytest -m tune --models {model}{batch}"


def tuning_log_dir(tuning_logs: Path, model: str, target: Any, batch_size: int = 1) -> Path:
    return tuning_logs / model / tv.target_key(target, batch_size)


def retune_hint(ctx: LoadContext) -> str:
    batch = ctx.model.input_shape[0]
    return RETUNE_HINT.format(model=ctx.model.name, batch="" if batch == 1 else f" --batch-size {batch}")


class TvmRelax:
    def __init__(self, name: str) -> None:
        try:
            import tvm
        except ImportError as exc:
            raise BackendUnavailable(f"apache-tvm is not installed ({exc}); run `pip install -e .`") from None
        self.name = name
        self._tvm = tvm
        self.tuned = name == "tvm-tuned"
        self._vm = None

    def version(self) -> str:
        return self._tvm.__version__

    def load(self, ctx: LoadContext) -> None:
        tv.set_runtime_threads(ctx.threads)
        target = tv.host_target(ctx.threads)
        ctx.info["tvm_target"] = str(target)
        # The export's file name is already a content key of model, weights and exporter versions.
        parts: dict[str, Any] = {"onnx": Path(ctx.onnx_path).name, "tvm": self._tvm.__version__, "target": str(target),
                                 "kind": self.name}
        if self.tuned:
            log_dir = tuning_log_dir(ctx.tuning_logs, ctx.model.name, target, ctx.model.input_shape[0])
            if not log_dir.exists():
                raise BackendUnavailable(
                    f"no tuning log for {ctx.model.name} on this CPU ({log_dir} does not exist); "
                    f"create one with `{retune_hint(ctx)}`")
            tv.check_database_files(log_dir)
            parts["database"] = tv.database_digest(log_dir)
            ctx.info["tuning_log"] = str(log_dir.relative_to(ctx.tuning_logs.parent)
                                         if log_dir.is_relative_to(ctx.tuning_logs.parent) else log_dir)
            meta = log_dir / tv.METADATA_FILE
            if meta.is_file():
                try:
                    ctx.info["tuning_metadata"] = json.loads(meta.read_text())
                except json.JSONDecodeError as exc:
                    raise UsageError(f"tuning log metadata {meta} is corrupt ({exc.msg}); "
                                     f"regenerate it with `{retune_hint(ctx)}`") from None
        key = content_key(**parts)
        lib_path = cached_path("tvm", f"{ctx.model.name}-{self.name}-{key}", ".so")
        info_path = lib_path.with_suffix(".json")
        if not (lib_path.exists() and info_path.exists()):
            build_info = self._build(ctx, target, lib_path)
            info_path.write_text(json.dumps(build_info))
        build_info = json.loads(info_path.read_text())
        ctx.info.update(build_info)
        self._vm = tv.load_vm(lib_path)

    def _build(self, ctx: LoadContext, target: Any, lib_path: Path) -> dict[str, Any]:
        mod = tv.import_onnx(ctx.onnx_path, ctx.model.input_shape)
        if not self.tuned:
            tv.compile_module(mod, target, lib_path)
            return {}
        log_dir = tuning_log_dir(ctx.tuning_logs, ctx.model.name, target, ctx.model.input_shape[0])
        lowered = tv.lower_for_tuning(mod, target)
        applied, coverage = tv.apply_database(lowered, target, tv.open_database(log_dir))
        if not coverage.complete:
            raise UsageError(
                f"tuning log {log_dir} has no record for {len(coverage.missing)} of {len(coverage.tunable)} "
                f"tunable functions of {ctx.model.name}: {', '.join(coverage.missing)}. A 'tuned' build with "
                f"untuned functions would not be a tuned number; retune with "
                f"`{retune_hint(ctx)}`")
        tv.compile_module(tv.finish_tuned(applied, target), target, lib_path)
        return {"tuning_coverage": coverage.summary(), "tuned_functions": coverage.covered,
                "tunable_functions": len(coverage.tunable)}

    def prepare_inputs(self, batch: np.ndarray) -> Any:
        return self._tvm.runtime.tensor(np.ascontiguousarray(batch, dtype=np.float32), self._tvm.cpu())

    def forward(self, inputs: Any) -> Any:
        return self._vm["main"](inputs)

    def to_numpy(self, outputs: Any) -> np.ndarray:
        return tv.to_numpy(outputs)


def create(name: str) -> TvmRelax:
    return TvmRelax(name)
