"""Apache TVM backends: `tvm` compiles the ONNX export with Relax as is; `tvm-tuned` applies the stored
MetaSchedule database for this model and this CPU at compile time, and refuses to build if it does not cover
every tunable function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import tvm_support as tv
from ..cache import cached_build_info, cached_path, content_key, write_entry
from ..errors import UsageError
from ..log_finder import NoLog, choose_log
from ..winograd import DIRECT, WINOGRAD
from . import BackendUnavailable, LoadContext, require

RETUNE_HINT = "pytest -m tune --models {model}{batch}"
LOWERING_LABELS = {WINOGRAD: "Winograd 3x3"}


def retune_hint(ctx: LoadContext) -> str:
    batch = ctx.model.input_shape[0]
    return RETUNE_HINT.format(model=ctx.model.name, batch="" if batch == 1 else f" --batch-size {batch}")


class TvmRelax:
    precisions = ("fp32",)  # the tuning logs and the import are float32
    precision_notes = {"int8": "TVM 0.27's ONNX importer turns QuantizeLinear/DequantizeLinear back into float32 "
                               "arithmetic, so a quantized model would run in float32, not int8"}

    def __init__(self, name: str) -> None:
        self.name = name
        self._tvm = require("tvm", "apache-tvm", "run `pip install -e .`")
        self.tuned = name == "tvm-tuned"
        self._vm = None
        self._log_dir: Path | None = None
        self._lowering = DIRECT

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
            log_dir = self._choose_log(ctx)
            tv.check_database_files(log_dir)
            parts["database"] = tv.database_digest(log_dir)
            meta = log_dir / tv.METADATA_FILE
            if meta.is_file():
                try:
                    ctx.info["tuning_metadata"] = json.loads(meta.read_text())
                except json.JSONDecodeError as exc:
                    raise UsageError(f"tuning log metadata {meta} is corrupt ({exc.msg}); "
                                     f"regenerate it with `{retune_hint(ctx)}`") from None
            self._lowering = ctx.info["tvm_lowering"] = tv.lowering_of(ctx.info.get("tuning_metadata", {}), meta)
            if self._lowering != DIRECT:
                parts["lowering"] = self._lowering
                ctx.info["tuning_log_label"] += f", {LOWERING_LABELS[self._lowering]}"
        key = content_key(**parts)
        lib_path = cached_path("tvm", f"{ctx.model.disk_key}-{self.name}-{key}", ".so")
        info_path = lib_path.with_suffix(".json")
        build_info = cached_build_info(lib_path, info_path)
        if build_info is None:
            build_info = self._build(ctx, target, lib_path)  # compile_module writes and seals the .so
            write_entry(info_path, json.dumps(build_info).encode())
        ctx.info.update(build_info)
        self._vm = tv.load_vm(lib_path)
        ctx.info["artifact_path"] = str(lib_path)

    def _choose_log(self, ctx: LoadContext) -> Path:
        """The log to apply (log_finder decides), recorded in ctx.info so every number says where it came from."""
        try:
            choice = choose_log(ctx.tuning_logs, ctx.model.disk_key, ctx.threads, ctx.model.input_shape[0],
                                exact_only=ctx.tuning_log_exact, named=ctx.tuning_log_name)
        except NoLog as exc:
            raise BackendUnavailable(f"{exc}; create one with `{retune_hint(ctx)}`") from None
        log_dir = choice.log.path
        self._log_dir = log_dir
        ctx.info.update({
            "tuning_log": str(log_dir.relative_to(ctx.tuning_logs.parent)
                              if log_dir.is_relative_to(ctx.tuning_logs.parent) else log_dir),
            "tuning_log_cpu": choice.log.key, "tuning_log_transferred": choice.transferred,
            "tuning_log_choice": choice.why, "tuning_log_label": choice.label,
        })
        return log_dir

    def _build(self, ctx: LoadContext, target: Any, lib_path: Path) -> dict[str, Any]:
        mod = tv.import_onnx(ctx.onnx_path, ctx.model.input_shape, ctx.model.input_name)
        if not self.tuned:
            tv.compile_module(mod, target, lib_path)
            return {}
        log_dir = self._log_dir
        coverage = tv.build_tuned(tv.lower_for_tuning(mod, target, self._lowering), target, log_dir, lib_path)
        if not coverage.complete:
            raise UsageError(
                f"tuning log {log_dir} has no record for {len(coverage.missing)} of {len(coverage.tunable)} "
                f"tunable functions of {ctx.model.name}: {', '.join(coverage.missing)}. A 'tuned' build with "
                f"untuned functions would not be a tuned number; retune with "
                f"`{retune_hint(ctx)}`")
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
