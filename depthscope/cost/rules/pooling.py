"""Pooling: every output reduces its window of prod(kernel) values with a tree (average adds one divide)."""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import Cost
from depthscope.symbols import clog2, numel
from depthscope.cost.registry import OpCall, register

aten = ops.aten


def kernel_window(call: OpCall) -> list:
    """kernel_size as a full list: an int or a one-element list applies to every spatial dim."""
    k = call.arg("kernel_size")
    dims = next((d for d in (1, 2, 3) if f"{d}d" in str(call.op)), 2)
    if isinstance(k, int):
        return [k] * dims
    k = list(k)
    return k * dims if len(k) == 1 else k


def window_reduce(out_numel, window, average: bool) -> Cost:
    cost = Cost(out_numel * window, clog2(window))
    return cost + Cost(out_numel, 1) if average else cost


@register(aten.max_pool1d, aten.max_pool2d, aten.max_pool3d, aten.max_pool2d_with_indices,
          aten.max_pool3d_with_indices, aten.max_pool1d_with_indices,
          work="numel(out) * w, w = prod(kernel)", depth="ceil(log2 w)")
def max_pool(call: OpCall) -> Cost:
    return window_reduce(call.out.numel, numel(kernel_window(call)), average=False)


@register(aten.avg_pool1d, aten.avg_pool2d, aten.avg_pool3d,
          work="numel(out) * w + numel(out), w = prod(kernel)", depth="ceil(log2 w) + 1")
def avg_pool(call: OpCall) -> Cost:
    return window_reduce(call.out.numel, numel(kernel_window(call)), average=True)


def adaptive_windows(i, o) -> tuple:
    """(sum, max) of the window lengths along one dim: output j pools [floor(j*i/o), ceil((j+1)*i/o)).

    Windows overlap and differ in length when o does not divide i (in=5, out=3 gives 2, 3, 2), so both are
    taken over the o windows, exactly: integers for integer sizes, else a sum and a Max of o floor/ceiling
    terms in the symbolic i (o is the module's output size, an integer). A symbolic o gets the bound
    ceil(i/o) + 1 on every window (a window spans at most ceil(i/o) + 1 inputs).
    """
    if o == 1:
        return i, i
    if isinstance(o, (int, sympy.Integer)):
        o = int(o)
        lengths = [sympy.ceiling(sympy.S((j + 1) * i) / o) - sympy.floor(sympy.S(j * i) / o) for j in range(o)]
        return sympy.Add(*lengths), sympy.Max(*lengths)
    w = sympy.ceiling(i / o) + 1
    return o * w, w


def adaptive_reduce(call: OpCall, average: bool) -> Cost:
    """Every output reduces its window with a tree; windows are products of per-dim windows, so the total
    read is rows * prod(sum of window lengths per dim) and the deepest tree is over prod(max length per dim)."""
    x = call.args[0]
    out_size = list(call.arg("output_size"))
    spatial_in = x.shape[x.ndim - len(out_size):]
    rows = numel(x.shape[: x.ndim - len(out_size)])
    windows = [adaptive_windows(i, o) for i, o in zip(spatial_in, out_size)]
    cost = Cost(rows * numel([w[0] for w in windows]), clog2(numel([w[1] for w in windows])))
    return cost + Cost(call.out.numel, 1) if average else cost


@register(aten.adaptive_avg_pool1d, aten.adaptive_avg_pool2d, aten.adaptive_avg_pool3d, aten._adaptive_avg_pool2d,
          aten._adaptive_avg_pool3d,
          work="rows * prod(sum of window lengths per dim) + numel(out); window j = [floor(j in/out), "
               "ceil((j+1) in/out)), all of in when out = 1",
          depth="ceil(log2(prod(max window per dim))) + 1")
def adaptive_avg_pool(call: OpCall) -> Cost:
    return adaptive_reduce(call, average=True)


@register(aten.adaptive_max_pool1d, aten.adaptive_max_pool2d, aten.adaptive_max_pool3d,
          work="rows * prod(sum of window lengths per dim)", depth="ceil(log2(prod(max window per dim)))")
def adaptive_max_pool(call: OpCall) -> Cost:
    return adaptive_reduce(call, average=False)

