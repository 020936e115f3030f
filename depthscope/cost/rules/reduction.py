"""Reductions, softmax and scans: trees of depth ceil(log2 k) over the reduced axis of size k (Blelloch 1996).

Convention: a reduction's work is numel(input) (k - 1 combines and one write per output, rounded up).
"""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import Cost
from depthscope.symbols import ONE, clog2, numel
from depthscope.cost.registry import OpCall, TensorMeta, register

aten = ops.aten


def reduced_size(x: TensorMeta, dims) -> sympy.Expr:
    """Number of elements combined into each output: the product of the reduced dims (all when dims is empty)."""
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return x.numel
    if isinstance(dims, int):
        dims = [dims]
    return numel([x.shape[d] for d in dims]) if x.ndim else ONE


def tree_reduce(x: TensorMeta, k) -> Cost:
    """Combine k values per output with a fan-in-2 tree."""
    return Cost(x.numel, clog2(k))


def _dims(call: OpCall):
    return call.arg("dim")


@register(aten.sum, aten.prod, aten.amax, aten.amin, aten.any, aten.all, aten.argmax, aten.argmin,
          aten.max, aten.min, aten.nansum, aten.count_nonzero, aten.aminmax,
          work="numel(in) (max/min of two tensors: numel(out))",
          depth="ceil(log2 k), k = reduced elements per output (two tensors: 1)")
def reduce(call: OpCall) -> Cost:
    x = call.args[0]
    if len(call.args) > 1 and isinstance(call.args[1], TensorMeta):
        # max(a, b) / min(a, b) between two tensors are elementwise
        return Cost(call.out.numel, 1)
    return tree_reduce(x, reduced_size(x, _dims(call)))


@register(aten.mean, aten.nanmean, work="numel(in) + numel(out)", depth="ceil(log2 k) + 1")
def mean(call: OpCall) -> Cost:
    """Sum tree, then one division per output."""
    x = call.args[0]
    return tree_reduce(x, reduced_size(x, _dims(call))) + Cost(call.out.numel, 1)


@register(aten.var, aten.std, aten.var_mean, aten.std_mean,
          work="4 numel(in) + 2 rows (+ rows for std)", depth="2 ceil(log2 k) + 4 (+1 for std)")
def variance(call: OpCall) -> Cost:
    """mean (tree + divide), subtract, square, sum tree, divide (+ sqrt for std)."""
    x = call.args[0]
    k = reduced_size(x, _dims(call))
    rows = call.out.numel
    cost = (tree_reduce(x, k) + Cost(rows, 1) + Cost(2 * x.numel, 2) + tree_reduce(x, k) + Cost(rows, 1))
    if str(call.op).startswith("aten.std"):
        cost = cost + Cost(rows, 1)
    return cost


@register(aten.norm, aten.linalg_vector_norm, aten.frobenius_norm,
          work="2 numel(in) + numel(out)", depth="ceil(log2 k) + 2")
def vector_norm(call: OpCall) -> Cost:
    """|x|^p elementwise, sum tree, root."""
    x = call.args[0]
    return Cost(x.numel, 1) + tree_reduce(x, reduced_size(x, _dims(call))) + Cost(call.out.numel, 1)


def softmax_cost(x: TensorMeta, k, log: bool = False) -> Cost:
    """Stable softmax over rows of k: max tree, subtract, exp, sum tree, divide: work 5 numel, depth 2 ceil(log2 k) + 3.

    log_softmax replaces the divide by a log per row and a subtract: 5 numel + rows, depth 2 ceil(log2 k) + 4.
    """
    n = x.numel
    rows = sympy.cancel(n / k)
    cost = tree_reduce(x, k) + Cost(2 * n, 2) + tree_reduce(x, k)
    if log:
        return cost + Cost(rows, 1) + Cost(n, 1)
    return cost + Cost(n, 1)


@register(aten._softmax, aten.softmax, aten.special_softmax, work="5 numel", depth="2 ceil(log2 k) + 3")
def softmax(call: OpCall) -> Cost:
    x = call.args[0]
    return softmax_cost(x, x.size(call.arg("dim")))


@register(aten._log_softmax, aten.log_softmax, aten.special_log_softmax,
          work="5 numel + rows", depth="2 ceil(log2 k) + 4")
def log_softmax(call: OpCall) -> Cost:
    x = call.args[0]
    return softmax_cost(x, x.size(call.arg("dim")), log=True)


@register(aten.logsumexp, work="4 numel(in) + 2 rows", depth="2 ceil(log2 k) + 4")
def logsumexp(call: OpCall) -> Cost:
    """max tree, subtract, exp, sum tree, log, add back the max."""
    x = call.args[0]
    k = reduced_size(x, _dims(call))
    rows = call.out.numel
    return tree_reduce(x, k) + Cost(2 * x.numel, 2) + tree_reduce(x, k) + Cost(2 * rows, 2)


def scan_cost(x: TensorMeta, k) -> Cost:
    """Work-efficient (Blelloch) scan: up-sweep and down-sweep, work 2 numel, depth 2 ceil(log2 k) (CMU-CS-90-190)."""
    return Cost(2 * x.numel, 2 * clog2(k))


@register(aten.cumsum, aten.cumprod, aten.cummax, aten.cummin, aten.logcumsumexp,
          work="2 numel", depth="2 ceil(log2 k), k = scanned length")
def scan(call: OpCall) -> Cost:
    x = call.args[0]
    return scan_cost(x, x.size(call.arg("dim")))
