"""Loss functions: elementwise terms, then the reduction (reduction = 0 none, 1 mean, 2 sum).

A loss over N terms is its per-element arithmetic (counted step by step, one operation per element per step)
followed by a sum tree over the N terms (depth ceil(log2 N)) and, for the mean, one divide.
"""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import FREE, Cost
from depthscope.symbols import ONE, clog2
from depthscope.cost.rules.reduction import softmax_cost
from depthscope.cost.registry import OpCall, TensorMeta, register

aten = ops.aten

NONE, MEAN, SUM = 0, 1, 2


def reduce_terms(n, reduction) -> Cost:
    """Sum the n loss terms (mean: then one divide); reduction none keeps them."""
    reduction = int(reduction if reduction is not None else MEAN)
    if reduction == NONE:
        return FREE
    cost = Cost(n, clog2(n))
    return cost + Cost(1, 1) if reduction == MEAN else cost


def _weights(call: OpCall) -> int:
    return sum(1 for name in ("weight", "pos_weight") if isinstance(call.arg(name), TensorMeta))


@register(aten.mse_loss, aten.l1_loss, work="2 N + reduction (N)", depth="2 + ceil(log2 N) (+1 mean)")
def mse_loss(call: OpCall) -> Cost:
    """(x - t)^2 or |x - t|: subtract and square (or abs), then the reduction."""
    x = call.args[0]
    return Cost(2 * x.numel, 2) + reduce_terms(x.numel, call.arg("reduction", MEAN))


@register(aten.smooth_l1_loss, aten.huber_loss, aten.soft_margin_loss, aten.kl_div,
          work="4 N (kl_div: 3 N) + reduction (N)", depth="4 (kl_div: 3) + ceil(log2 N) (+1 mean)")
def smooth_l1_loss(call: OpCall) -> Cost:
    """smooth_l1 / huber: subtract, abs, compare, select the branch (4 steps); soft_margin: multiply, exp, log1p,
    (4 steps, counted alike); kl_div: log, subtract, multiply (3 steps)."""
    steps = 3 if str(call.op).startswith("aten.kl_div") else 4
    x = call.args[0]
    return Cost(steps * x.numel, steps) + reduce_terms(x.numel, call.arg("reduction", MEAN))


@register(aten.binary_cross_entropy, aten.binary_cross_entropy_with_logits,
          work="4 N (+ N per weight / pos_weight) + reduction (N)", depth="4 (+1 per weight) + ceil(log2 N) (+1 mean)")
def binary_cross_entropy(call: OpCall) -> Cost:
    """-(t log x + (1 - t) log(1 - x)) (with logits: the stable log-sigmoid form): 1 - x, the two logs, the
    products and their sum: 4 steps counted one operation per element each; each weight multiplies once more."""
    x = call.args[0]
    steps = 4 + _weights(call)
    return Cost(steps * x.numel, steps) + reduce_terms(x.numel, call.arg("reduction", MEAN))


def _class_rows(x: TensorMeta):
    """(rows, classes): classes along dim 1 ([N, C, d1, ...]) or dim 0 for a single [C] input."""
    if x.ndim <= 1:
        return ONE, x.numel
    c = x.shape[1]
    return sympy.cancel(x.numel / c), c


def nll_cost(rows, weighted: bool, reduction) -> Cost:
    """Pick -logp[target] per row (gather and negate, depth 1) [, times weight[target] (2 rows, depth 1)], then the
    reduction (a weighted mean divides by the sum of the picked weights: a second tree, in parallel)."""
    cost = Cost(rows, 1)
    if weighted:
        cost = cost + Cost(2 * rows, 1)
    red = reduce_terms(rows, reduction)
    if weighted and int(reduction if reduction is not None else MEAN) == MEAN:
        red = Cost(rows, clog2(rows)) | Cost(rows, clog2(rows))
        red = red + Cost(1, 1)
    return cost + red


@register(aten.nll_loss, aten.nll_loss_nd, aten.nll_loss_forward, aten.nll_loss2d_forward,
          work="rows (gather) (+ 2 rows with weight) + reduction (rows)",
          depth="1 (+1 weight) + ceil(log2 rows) (+1 mean)")
def nll_loss(call: OpCall) -> Cost:
    x = call.args[0]
    rows, _ = _class_rows(x)
    return nll_cost(rows, isinstance(call.arg("weight"), TensorMeta), call.arg("reduction", MEAN))


@register(aten.nll_loss_backward, aten.nll_loss2d_backward,
          work="numel(self) (zero fill) + rows (scatter of -grad * w)", depth="2")
def nll_loss_backward(call: OpCall) -> Cost:
    x = call.args[1]
    rows, _ = _class_rows(x)
    return Cost(x.numel + rows, 2)


@register(aten.cross_entropy_loss,
          work="log_softmax over C (5 N + rows) + nll (rows ...) [+ label smoothing N + 2 rows]; "
               "probability targets: 2 N + rows",
          depth="2 ceil(log2 C) + 4 + 1 + ceil(log2 rows) (+1 mean) [+ label smoothing ceil(log2 C) + 1]")
def cross_entropy(call: OpCall) -> Cost:
    """log_softmax over the classes, then nll_loss; label smoothing also sums logp over the classes (in parallel
    with the pick) and mixes the two terms; probability targets multiply and sum over the classes instead."""
    x, target = call.args[0], call.args[1]
    rows, classes = _class_rows(x)
    cost = softmax_cost(x, classes, log=True)
    reduction = call.arg("reduction", MEAN)
    weighted = isinstance(call.arg("weight"), TensorMeta)
    if isinstance(target, TensorMeta) and target.ndim == x.ndim and x.ndim > 0 and target.shape == x.shape:
        # class probabilities: -sum_c t_c logp_c per row
        return cost + Cost(x.numel, 1) + Cost(x.numel, clog2(classes)) + reduce_terms(rows, reduction)
    pick = nll_cost(rows, weighted, reduction)
    if float(call.arg("label_smoothing", 0.0) or 0.0) > 0:
        smooth = Cost(x.numel, clog2(classes)) + reduce_terms(rows, reduction)
        return cost + (pick | smooth) + Cost(2, 2)
    return cost + pick
