"""Normalisations, composed from reductions and elementwise steps (each step costed as in reduction.py)."""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import Cost
from depthscope.symbols import numel
from depthscope.cost.rules.reduction import tree_reduce
from depthscope.cost.registry import OpCall, TensorMeta, register

aten = ops.aten


def standardize(x: TensorMeta, k, affine_steps: int) -> Cost:
    """Normalise rows of k values: mean (tree, divide), subtract, square, variance (tree, divide), add eps,
    rsqrt, multiply; then `affine_steps` elementwise steps (weight multiply, bias add).

    work 5 numel + 4 rows (+ numel per affine step); depth 2 ceil(log2 k) + 7 (+ affine steps).
    """
    n = x.numel
    rows = sympy.cancel(n / k)
    cost = (tree_reduce(x, k) + Cost(rows, 1)          # mean
            + Cost(2 * n, 2)                           # x - mean, squared
            + tree_reduce(x, k) + Cost(rows, 1)        # variance
            + Cost(2 * rows, 2)                        # + eps, rsqrt
            + Cost(n, 1))                              # (x - mean) * rstd
    if affine_steps:
        cost = cost + Cost(affine_steps * n, affine_steps)
    return cost


def _affine_steps(call: OpCall) -> int:
    return int(call.arg("weight") is not None) + int(call.arg("bias") is not None)


@register(aten.layer_norm, aten.native_layer_norm,
          work="5 numel + 4 rows (+ numel per affine step)", depth="2 ceil(log2 k) + 7 (+1 per affine step)")
def layer_norm(call: OpCall) -> Cost:
    x = call.args[0]
    k = numel(x.shape[x.ndim - len(call.arg("normalized_shape")):])
    return standardize(x, k, _affine_steps(call))


@register(aten.rms_norm, aten._fused_rms_norm,
          work="3 numel + 3 rows (+ numel with weight)", depth="ceil(log2 k) + 5 (+1 with weight)")
def rms_norm(call: OpCall) -> Cost:
    """square, sum tree, divide, add eps, rsqrt, multiply (+ weight): work 3 numel + 3 rows, depth ceil(log2 k) + 5."""
    x = call.args[0]
    k = numel(x.shape[x.ndim - len(call.arg("normalized_shape")):])
    n = x.numel
    rows = sympy.cancel(n / k)
    cost = Cost(n, 1) + tree_reduce(x, k) + Cost(3 * rows, 3) + Cost(n, 1)
    if call.arg("weight") is not None:
        cost = cost + Cost(n, 1)
    return cost


@register(aten.group_norm, aten.native_group_norm,
          work="5 numel + 4 rows (+ numel per affine step), k = C/groups * H*W",
          depth="2 ceil(log2 k) + 7 (+1 per affine step)")
def group_norm(call: OpCall) -> Cost:
    x = call.args[0]
    groups = call.arg("num_groups", call.arg("group"))
    k = sympy.cancel(x.numel / (x.shape[0] * groups))
    return standardize(x, k, _affine_steps(call))


@register(aten.instance_norm, work="5 numel + 4 rows (+ numel per affine step), k = H*W",
          depth="2 ceil(log2 k) + 7 (+1 per affine step)")
def instance_norm(call: OpCall) -> Cost:
    x = call.args[0]
    return standardize(x, numel(x.shape[2:]), _affine_steps(call))


@register(aten.batch_norm, aten.native_batch_norm, aten._native_batch_norm_legit,
          aten._native_batch_norm_legit_no_training, aten._native_batch_norm_legit_functional,
          aten.cudnn_batch_norm, aten.miopen_batch_norm,
          work="training: as layer norm with k = N*H*W per channel; eval: 2 numel + 5 C",
          depth="training: 2 ceil(log2 k) + 7 (+ affine); eval: 6")
def batch_norm(call: OpCall) -> Cost:
    """Training: statistics per channel over the other N*H*W values, as standardize. Eval: the running stats fold
    into a per-channel scale and shift (add eps, rsqrt, times weight; mean times scale, subtract from bias:
    5 C work, depth 4), then x * scale + shift (2 numel, depth 2)."""
    x = call.args[0]
    channels = x.shape[1] if x.ndim > 1 else x.shape[0]
    # every overload but _native_batch_norm_legit_no_training takes a `training` flag (legit included)
    training = bool(call.arg("training", False))
    if str(call.op).startswith("aten._native_batch_norm_legit_no_training"):
        training = False
    if training:
        return standardize(x, sympy.cancel(x.numel / channels), _affine_steps(call))
    return Cost(5 * channels, 4) + Cost(2 * x.numel, 2)
