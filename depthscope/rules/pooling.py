"""Pooling: every output reduces its window of prod(kernel) values with a tree (average adds one divide)."""

from __future__ import annotations

import sympy
from torch import ops

from ..cost import Cost
from ..symbols import clog2, numel
from .registry import OpCall, register

aten = ops.aten


def _kernel(call: OpCall) -> list:
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
          aten.max_pool3d_with_indices, aten.max_pool1d_with_indices)
def max_pool(call: OpCall) -> Cost:
    return window_reduce(call.out.numel, numel(_kernel(call)), average=False)


@register(aten.avg_pool1d, aten.avg_pool2d, aten.avg_pool3d)
def avg_pool(call: OpCall) -> Cost:
    return window_reduce(call.out.numel, numel(_kernel(call)), average=True)


def _adaptive_window(call: OpCall):
    """Adaptive pooling windows span ceil(in/out) values per spatial dim (exact when out divides in)."""
    x = call.args[0]
    out_size = call.arg("output_size")
    spatial_in = x.shape[x.ndim - len(out_size):]
    return numel([sympy.ceiling(i / o) if o != 1 else i for i, o in zip(spatial_in, out_size)])


@register(aten.adaptive_avg_pool1d, aten.adaptive_avg_pool2d, aten.adaptive_avg_pool3d, aten._adaptive_avg_pool2d,
          aten._adaptive_avg_pool3d)
def adaptive_avg_pool(call: OpCall) -> Cost:
    return window_reduce(call.out.numel, _adaptive_window(call), average=True)


@register(aten.adaptive_max_pool1d, aten.adaptive_max_pool2d, aten.adaptive_max_pool3d)
def adaptive_max_pool(call: OpCall) -> Cost:
    return window_reduce(call.out.numel, _adaptive_window(call), average=False)

