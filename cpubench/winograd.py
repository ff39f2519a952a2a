"""Winograd convolution for tuned TVM: 3x3, stride-1 convolutions as F(m x m, 3 x 3) transforms around a batched
matrix product, which needs (m + 2)^2 / (9 m^2) of the direct convolution's multiplications (F(4x4, 3x3): 0.25).
Only on feature maps of at least MIN_SIZE x MIN_SIZE; the others stay direct.

The weights' transform runs once, at compile time, in numpy on the constant weights (float64, then cast), so the
model computes only the input transform, the batched product and the output transform. MetaSchedule tunes the
product like any matrix product, and the transforms within the schedule this module registers for them
(`register_schedule_rules`). A log records whether it was tuned with this rewrite (`metadata.json`'s
`lowering`), and a model is compiled the way its log was tuned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The lowering a log's records were tuned for. Logs without the key were tuned on direct convolutions.
DIRECT = "direct"
WINOGRAD = "winograd"
LOWERINGS = (DIRECT, WINOGRAD)
# MetaSchedule looks a block's "schedule_rule" up as s_tir.meta_schedule.<target key>.<rule>.
DATA_PACK_RULE = "cpubench_winograd_data_pack"
INVERSE_RULE = "cpubench_winograd_inverse"


# Output tile m of F(m x m, 3 x 3): 4 needs a quarter of the direct multiplications.
TILE = 4
MULTIPLY_SHARE = (TILE + 2) ** 2 / (9 * TILE**2)
# Feature maps smaller than this stay direct: their batched products have too few tiles (16 on 14x14) to run
# near the machine's matrix-product rate. Measured on ResNet18 (x86-64-v3 code, 2 cores, 64-128 candidates per
# Winograd task against tuned direct kernels): 0.68-0.95x the direct speed on 14x14 and 7x7, 1.1-1.7x on 56x56
# and 28x28 already (2.4-3.7x once tuned with the model's full budget).
MIN_SIZE = 28


def tile_for(height: int, width: int) -> int | None:
    """The output tile for a feature map of this size, None to keep the convolution direct."""
    return TILE if min(height, width) >= MIN_SIZE else None


def transform_matrices(m: int, r: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A (alpha x m), B (alpha x alpha), G (alpha x r) of Cook-Toom F(m, r), float64, as TOPI defines them."""
    from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

    a, b, g = _cook_toom_convolution(_interpolation_points(m + r - 2), m, r)
    return np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(g, np.float64)


def transform_weight(weight_ohwi: np.ndarray, m: int) -> np.ndarray:
    """OHWI 3x3 weights -> U[eps, nu, ci, co] = G w G^T per (co, ci), output channels innermost."""
    _, _, g = transform_matrices(m)
    u = np.einsum("ek,okli,nl->enio", g, weight_ohwi.astype(np.float64), g)
    return np.ascontiguousarray(u.astype(weight_ohwi.dtype))


def _two_passes(tile: Any, mat: Any, out: int, name: str, rule: str) -> Any:
    """out[i, j, p, c] = sum over a, b of mat[a, i] tile[a, b, p, c] mat[b, j] (M^T X M per tile and channel), as
    two 1-D passes, rows then columns: 2 x alpha^3 products per tile and channel instead of alpha^4."""
    from tvm import te

    alpha, _, p_n, c_n = (int(d) for d in tile.shape)
    r_b = te.reduce_axis((0, alpha), "r_b")
    rows = te.compute((alpha, out, p_n, c_n),
                      lambda a, j, p, c: te.sum(tile[a, r_b, p, c] * mat[r_b, j], axis=[r_b]),
                      name=f"{name}_rows", attrs={"schedule_rule": "None"})
    r_a = te.reduce_axis((0, alpha), "r_a")
    return te.compute((out, out, p_n, c_n),
                      lambda i, j, p, c: te.sum(rows[r_a, j, p, c] * mat[r_a, i], axis=[r_a]),
                      name=name, attrs={"schedule_rule": rule})


def conv2d_nhwc_packed(data: Any, kernel_pack: Any, padding: tuple[int, int, int, int], m: int) -> Any:
    """TE: NHWC data, transformed weights U[alpha, alpha, CI, CO] -> NHWC output (TOPI's NHWC Winograd with the
    weight transform taken out, and U laid out with output channels innermost for the vector units)."""
    from tvm import te
    from tvm.topi.nn.pad import pad
    from tvm.topi.nn.winograd_util import const_matrix
    from tvm.topi.utils import get_const_tuple

    n, h, w, ci_n = get_const_tuple(data.shape)
    alpha, _, _, co_n = get_const_tuple(kernel_pack.shape)
    a_np, b_np, _ = transform_matrices(m)
    dtype = str(data.dtype)
    A, B = const_matrix(a_np.astype(dtype), "A"), const_matrix(b_np.astype(dtype), "B")
    pad_t, pad_l, pad_b, pad_r = padding
    out_h, out_w = h + pad_t + pad_b - 2, w + pad_l + pad_r - 2
    n_h, n_w = (out_h + m - 1) // m, (out_w + m - 1) // m
    p_n = n * n_h * n_w
    extra_h = (n_h - 1) * m + alpha - (h + pad_t + pad_b)
    extra_w = (n_w - 1) * m + alpha - (w + pad_l + pad_r)
    data_pad = pad(data, (0, pad_t, pad_l, 0), (0, pad_b + extra_h, pad_r + extra_w, 0), name="data_pad",
                   attrs={"schedule_rule": "None"})
    input_tile = te.compute(
        (alpha, alpha, p_n, ci_n),
        lambda eps, nu, p, ci: data_pad[p // (n_h * n_w), ((p // n_w) % n_h) * m + eps, (p % n_w) * m + nu, ci],
        name="input_tile", attrs={"schedule_rule": "None"})
    data_pack = _two_passes(input_tile, B, alpha, "data_pack", DATA_PACK_RULE)
    ci = te.reduce_axis((0, ci_n), name="ci")
    bgemm = te.compute(
        (alpha, alpha, p_n, co_n),
        lambda eps, nu, p, co: te.sum(data_pack[eps, nu, p, ci] * kernel_pack[eps, nu, ci, co], axis=[ci]),
        name="bgemm", attrs={"meta_schedule.write_cache_level": [2]})
    inverse = _two_passes(bgemm, A, m, "inverse", INVERSE_RULE)
    return te.compute(
        (n, out_h, out_w, co_n),
        lambda b, y, x, co: inverse[y % m, x % m, b * n_h * n_w + (y // m) * n_w + (x // m), co],
        name="conv2d_winograd")


def eligible(call: Any, weight: Any) -> bool:
    """A float32 NHWC/OHWI 3x3 convolution (float32 out), stride 1, no dilation, one group, static shapes, constant
    weights."""
    from tvm.ir.expr import Constant

    attrs = call.attrs
    if not isinstance(weight, Constant) or weight.value.dtype != "float32":
        return False
    if str(attrs.out_dtype or "float32") not in ("", "float32"):
        return False
    if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != ("NHWC", "OHWI", "NHWC"):
        return False
    if [int(s) for s in attrs.strides] != [1, 1] or [int(d) for d in attrs.dilation] != [1, 1]:
        return False
    shape = weight.value.shape
    data_shape = call.args[0].ty.shape
    return int(attrs.groups) == 1 and tuple(shape[1:3]) == (3, 3) and data_shape is not None and all(
        isinstance(d, int) or type(d).__name__ == "IntImm" for d in data_shape.values)


def rewrite(mod: Any) -> Any:
    """Every eligible relax.nn.conv2d in `mod` becomes a call_tir of the Winograd TE function, with its weights
    transformed in numpy. Run after the layout conversion and constant folding (weights must be constants)."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    conv2d = tvm.ir.Op.get("relax.nn.conv2d")

    @mutator
    class _Rewriter(PyExprMutator):
        def visit_call_(self, call):  # noqa: N802 (TVM's visitor name)
            call = super().visit_call_(call)
            if call.op != conv2d:
                return call
            weight = call.args[1]
            if isinstance(weight, relax.Var):
                weight = self.lookup_binding(weight) or weight
            if not eligible(call, weight):
                return call
            data = call.args[0]
            _, h, w, _ = (int(d) for d in data.ty.shape.values)
            m = tile_for(h, w)
            if m is None:
                return call
            packed = relax.const(transform_weight(weight.value.numpy(), m))
            padding = tuple(int(p) for p in call.attrs.padding)
            return self.builder_.call_te(conv2d_nhwc_packed, data, packed, padding, m,
                                         primfunc_name_hint="conv2d_winograd")

    rewriter = _Rewriter(mod)
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
    return rewriter.builder_.get()


def _transform_rule(sch: Any, block: Any) -> list[Any]:
    """Schedule of a transform's second pass (loops eps|vh, nu|vw, p, c, r) and, at the same place, its first
    pass: one tile `p` and channel chunk per parallel task, the inner channels vectorized innermost, the short
    transform loops unrolled with the transform matrices inlined, so their entries are constants."""
    i, j, p, c, r = sch.get_loops(block)[-5:]
    c_outer, c_inner = sch.split(c, factors=sch.sample_perfect_tile(c, n=2, max_innermost_factor=64))
    sch.reorder(p, c_outer, i, j, r, c_inner)
    first = None
    for producer in sch.get_producers(block):
        name = sch.get(producer).name_hint
        if name in ("A", "B"):
            sch.compute_inline(producer)
        elif name.endswith("_rows"):
            first = producer
    for producer in sch.get_producers(first):
        name = sch.get(producer).name_hint
        if name == "input_tile":
            for pad in sch.get_producers(producer):
                sch.compute_inline(pad)
            sch.compute_inline(producer)
    sch.compute_at(first, c_outer, preserve_unit_loops=True)
    a, b, _, c1, r1 = sch.get_loops(first)[-5:]
    sch.reorder(a, b, r1, c1)
    for loop in (a, b, r1, i, j, r):
        sch.unroll(loop)
    sch.vectorize(c1)
    sch.vectorize(c_inner)
    sch.parallel(sch.fuse(p, c_outer))
    return [sch]


def register_schedule_rules() -> None:
    """Register the transforms' schedule for MetaSchedule's CPU targets (idempotent)."""
    import tvm

    for rule in (DATA_PACK_RULE, INVERSE_RULE):
        tvm.register_global_func(f"s_tir.meta_schedule.cpu.{rule}", _transform_rule, override=True)
