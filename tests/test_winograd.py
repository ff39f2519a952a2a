"""Winograd lowering of 3x3 convolutions: the transforms, the rewrite, and the log's metadata deciding it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cpubench import tvm_support as tv
from cpubench import winograd
from cpubench.errors import UsageError
from cpubench.models import BuiltModel
from cpubench.onnx_export import export_onnx

SHAPE = (1, 3, 32, 32)


@pytest.mark.parametrize("m", [2, 4])
def test_transforms_reproduce_a_direct_convolution(m):
    """Y = A^T [(G g G^T) * (B^T d B)] A equals the m x m valid correlation of the tile d with g, with the weight
    transform laid out as the TE function reads it (U[eps, nu, ci, co])."""
    rng = np.random.default_rng(m)
    alpha = m + 2
    d = rng.standard_normal((alpha, alpha))
    g = rng.standard_normal((3, 3))
    a, b, _ = winograd.transform_matrices(m)
    u = winograd.transform_weight(g.reshape(1, 3, 3, 1), m)[:, :, 0, 0]  # OHWI with one channel each
    y = a.T @ (u * (b.T @ d @ b)) @ a
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(y, direct, rtol=1e-10, atol=1e-10)


class ThreeConvs(torch.nn.Module):
    """3x3 stride 1 on 32x32 (rewritten), 3x3 stride 2, 3x3 stride 1 on 16x16 (too small: direct), 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.c = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.d = torch.nn.Conv2d(16, 4, 1)

    def forward(self, x):
        y = torch.relu(self.b(torch.relu(self.a(x))))
        return self.d(torch.relu(self.c(y) + y))


def test_winograd_lowering_computes_what_the_model_computes():
    torch.manual_seed(0)
    model = BuiltModel("three-convs", ThreeConvs().eval(), "seeded", "three-convs-seed0", SHAPE)
    relax_mod = tv.import_onnx(export_onnx(model), SHAPE)
    target = tv.host_target(1)
    x = np.random.default_rng(0).standard_normal(SHAPE).astype("float32")
    expected = model.module(torch.from_numpy(x)).detach().numpy()
    import tvm
    from tvm import relax

    for lowering in winograd.LOWERINGS:
        lowered = tv.lower_for_tuning(relax_mod, target, lowering)
        rewritten = [gv.name_hint for gv, _ in lowered.functions_items() if "winograd" in gv.name_hint]
        assert len(rewritten) == (1 if lowering == winograd.WINOGRAD else 0), (lowering, rewritten)
        vm = relax.VirtualMachine(tvm.compile(lowered, target=target), tvm.cpu())
        got = tv.to_numpy(vm["main"](tvm.runtime.tensor(x)))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=lowering)


def test_unknown_lowering_is_refused_naming_it():
    with pytest.raises(UsageError, match="unknown convolution lowering 'fft'"):
        tv.lower_for_tuning(None, tv.host_target(1), "fft")


def test_log_lowering_reads_the_metadata(tmp_path):
    assert tv.log_lowering(tmp_path) == winograd.DIRECT  # no metadata.json: a log from before lowerings
    meta = tmp_path / tv.METADATA_FILE
    meta.write_text(json.dumps({"cpu": "x"}))
    assert tv.log_lowering(tmp_path) == winograd.DIRECT
    meta.write_text(json.dumps({"lowering": "winograd"}))
    assert tv.log_lowering(tmp_path) == winograd.WINOGRAD
    meta.write_text(json.dumps({"lowering": "fft"}))
    with pytest.raises(UsageError, match=f"{meta}: unknown lowering 'fft'"):
        tv.log_lowering(tmp_path)
    meta.write_text("{not json")
    with pytest.raises(UsageError, match=f"{meta} is corrupt"):
        tv.log_lowering(tmp_path)


def test_one_winograd_tasks_design_space_builds_runs_and_matches_torch():
    """The tuner's Winograd path, cheaply: MetaSchedule extracts the Winograd task, generates its design space with
    the transforms' schedule rules (register_schedule_rules), and every design-space schedule, applied to the model
    through a database as a stored log would be, compiles, runs and gives torch's answer."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    from cpubench.tuning.search import extract

    torch.manual_seed(0)
    model = BuiltModel("three-convs", ThreeConvs().eval(), "seeded", "three-convs-seed0", SHAPE)
    target = tv.host_target(1)
    winograd.register_schedule_rules()
    lowered = tv.lower_for_tuning(tv.import_onnx(export_onnx(model), SHAPE), target, winograd.WINOGRAD)
    task = next(t for t in extract(lowered, target) if "winograd" in t.task_name)
    context = ms.TuneContext(mod=task.dispatched[0], target=target, space_generator="post-order-apply",
                             task_name=task.task_name, num_threads=1, rand_state=0)
    spaces = context.generate_design_space()
    assert spaces, "no design space for the Winograd task"
    traces = [str(space.trace) for space in spaces]
    # the transforms' own rule ran: their loops are unrolled (sch.unroll; MetaSchedule's default rules only annotate
    # blocks with meta_schedule.unroll_explicit) with the transform matrices inlined
    assert all("sch.unroll(" in trace and "compute_inline" in trace for trace in traces), traces[0]
    x = np.random.default_rng(1).standard_normal(SHAPE).astype("float32")
    expected = model.module(torch.from_numpy(x)).detach().numpy()
    for space in spaces:
        database = ms.database.MemoryDatabase()
        workload = database.commit_workload(task.dispatched[0])
        database.commit_tuning_record(ms.database.TuningRecord(space.trace, workload, run_secs=[1e-3],
                                                               target=target))
        applied, coverage = tv.apply_database(lowered, target, database)
        assert task.task_name not in coverage.missing
        vm = relax.VirtualMachine(tvm.compile(tv.finish_tuned(applied, target), target=target), tvm.cpu())
        got = tv.to_numpy(vm["main"](tvm.runtime.tensor(x)))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
