"""Distances between point sets: every pair is a difference, a power (or absolute value) and a sum over the
M coordinates (a tree), then a root for p other than 0, 1 and infinity.

cdist between [B, P, M] and [B, R, M]: work 3 B P R M (+ B P R root), depth 2 + ceil(log2 M) (+1 root). The
convention costs the direct formula, also for p = 2 where torch may use the matmul expansion
|x|^2 - 2 x.y + |y|^2 (the same order of work and depth).
"""

from __future__ import annotations

import math

import sympy
from torch import ops

from depthscope.cost.value import Cost
from depthscope.symbols import ONE, clog2, numel
from depthscope.cost.rules.indexing import broadcast_shape
from depthscope.cost.registry import OpCall, register

aten = ops.aten


def _has_root(p) -> bool:
    try:
        value = float(p)
    except (TypeError, ValueError):
        return True
    return not (value in (0.0, 1.0) or math.isinf(value))


def pair_distances(pairs, m, p) -> Cost:
    """`pairs` distances over m coordinates: difference and power (2 per coordinate, depth 2), a sum tree
    (m per pair, depth ceil(log2 m)), then a root per pair when p needs one."""
    cost = Cost(2 * pairs * m, 2) + Cost(pairs * m, clog2(m))
    if _has_root(p):
        cost = cost + Cost(pairs, 1)
    return cost


@register(aten.cdist, aten._cdist_forward, aten._euclidean_dist,
          work="3*B*P*R*M (+ B*P*R root for p not in 0, 1, inf)", depth="2 + ceil(log2 M) (+1 root)")
def cdist(call: OpCall) -> Cost:
    x1 = call.args[0]
    p = 2.0 if str(call.op).startswith("aten._euclidean_dist") else call.arg("p", 2.0)
    return pair_distances(call.out.numel, x1.shape[-1], p)


@register(aten.pdist, aten._pdist_forward,
          work="3*P*M (+ P root), P = N(N-1)/2 pairs", depth="2 + ceil(log2 M) (+1 root)")
def pdist(call: OpCall) -> Cost:
    x = call.args[0]
    return pair_distances(call.out.numel, x.shape[-1], call.arg("p", 2.0))


@register(aten._cdist_backward, aten._pdist_backward,
          work="numel(grad) (pair scale) + 3*numel(grad)*M (difference, weight, multiply) + numel(grad)*M (sum)",
          depth="1 + 2 + ceil(log2 R), R = points of the other set")
def distance_backward(call: OpCall) -> Cost:
    """grad x1[i] = sum over j of grad[i, j] * (x1[i] - x2[j]) * |x1[i] - x2[j]|^(p-2) / dist[i, j]^(p-1):
    a scale per pair, three elementwise steps per coordinate, a sum over the other set."""
    grad = call.args[0]
    x1 = call.args[1]
    m = x1.shape[-1]
    pairs = grad.numel
    if str(call.op).startswith("aten._pdist_backward"):
        others = x1.shape[0]
    else:
        others = call.args[2].shape[-2]
    return Cost(pairs, 1) + Cost(3 * pairs * m, 2) + Cost(pairs * m, clog2(others))


@register(aten.pairwise_distance,
          work="4 N + rows (root), N = numel(broadcast)", depth="3 + ceil(log2 M) + 1")
def pairwise_distance(call: OpCall) -> Cost:
    """|x1 - x2 + eps|_p along the last dim: subtract, add eps, power (3 N, depth 3), sum tree, root."""
    x1, x2 = call.args[0], call.args[1]
    shape = broadcast_shape(x1.shape, x2.shape)
    n = numel(shape)
    m = shape[-1] if shape else ONE
    rows = sympy.cancel(n / m)
    cost = Cost(3 * n, 3) + Cost(n, clog2(m))
    return cost + Cost(rows, 1) if _has_root(call.arg("p", 2.0)) else cost


@register(aten.cosine_similarity,
          work="6 N + 3 rows, N = numel(broadcast)", depth="1 + ceil(log2 k) + 3, k = size(dim)")
def cosine_similarity(call: OpCall) -> Cost:
    """x1.x2 and the two squared norms, three (multiply, sum tree) in parallel; then the product of the norms,
    the eps clamp with its root, and the divide (3 rows, depth 3)."""
    x1, x2 = call.args[0], call.args[1]
    shape = broadcast_shape(x1.shape, x2.shape)
    n = numel(shape)
    k = shape[call.arg("dim", 1)] if shape else ONE
    rows = sympy.cancel(n / k)
    one_sum = Cost(n, 1) + Cost(n, clog2(k))
    return (one_sum | one_sum | one_sum) + Cost(3 * rows, 3)
