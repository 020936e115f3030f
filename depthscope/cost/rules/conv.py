"""Convolutions: 2 * out * (C_in/groups) * prod(kernel) FLOPs (flop_counter), depth 1 + ceil(log2(fan-in))."""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import Cost
from depthscope.symbols import clog2, numel
from depthscope.cost.registry import OpCall, register

aten = ops.aten


def conv_cost(x, w, out, transposed: bool, groups, bias: bool) -> Cost:
    """Direct convolution. Weight is [C_out, C_in/groups, *k] (transposed: [C_in, C_out/groups, *k]).

    FLOPs follow flop_counter.conv_flop_count exactly: 2 * N * prod(spatial) * w0 * w1 * prod(k), with the
    spatial extent of the output (of the input when transposed). Depth: each output sums its fan-in.
    """
    kernel = numel(w.shape[2:])
    if transposed:
        flops = 2 * x.shape[0] * numel(x.shape[2:]) * w.shape[0] * w.shape[1] * kernel
        fan_in = sympy.Mul(w.shape[0] / groups, kernel) if groups != 1 else w.shape[0] * kernel
    else:
        flops = 2 * numel(out.shape) * w.shape[1] * kernel
        fan_in = w.shape[1] * kernel
    cost = Cost(flops, 1 + clog2(fan_in), flops)
    if bias:
        cost = cost + Cost(out.numel, 1)
    return cost


@register(aten.convolution, aten._convolution,
          work="2 * out * (C_in/groups) * prod(kernel) (+ numel(out) bias); transposed: over the input extent", depth="1 + ceil(log2((C_in/groups) * prod(kernel))) (+1 bias)")
def convolution(call: OpCall) -> Cost:
    x, w = call.args[0], call.args[1]
    return conv_cost(x, w, call.out, bool(call.arg("transposed", False)), call.arg("groups", 1),
                     call.arg("bias") is not None)


@register(aten.conv1d, aten.conv2d, aten.conv3d,
          work="2 * out * (C_in/groups) * prod(kernel) (+ numel(out) bias); transposed: over the input extent", depth="1 + ceil(log2((C_in/groups) * prod(kernel))) (+1 bias)")
def conv_nd(call: OpCall) -> Cost:
    x, w = call.args[0], call.args[1]
    return conv_cost(x, w, call.out, False, call.arg("groups", 1), call.arg("bias") is not None)


@register(aten.conv_transpose1d, aten.conv_transpose2d, aten.conv_transpose3d,
          work="2 * numel(in) * C_out/groups * prod(kernel) (+ numel(out) bias)",
          depth="1 + ceil(log2((C_in/groups) * prod(kernel))) (+1 bias)")
def conv_transpose_nd(call: OpCall) -> Cost:
    x, w = call.args[0], call.args[1]
    return conv_cost(x, w, call.out, True, call.arg("groups", 1), call.arg("bias") is not None)
