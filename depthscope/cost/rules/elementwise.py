"""Elementwise maps, activations, fills and copies: one operation per output element, depth 1 (Blelloch 1996)."""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import FREE, Cost
from depthscope.cost.registry import OpCall, TensorMeta, register, set_pointwise_rule
from depthscope.symbols import ONE, clog2

aten = ops.aten


@set_pointwise_rule
@register(work="numel(out)", depth="1; m >= 3 tensor operands (addcmul, lerp, clamp with tensor bounds): ceil(log2 m)")
def elementwise(call: OpCall) -> Cost:
    """work = numel(out): every element is computed independently. Depth 1 for one or two operands; an element
    that combines m >= 3 tensor operands (addcmul's self + t1 * t2, lerp's start, end and weight, clamp between
    two tensors) takes ceil(log2 m) levels of binary operations."""
    return Cost(call.out.numel, max(ONE, clog2(len(call.tensors()))))


def select(call: OpCall) -> Cost:
    """where(cond, a, b), masked_fill(self, mask, value): the flag picks one of two values, so each output
    element reads 2 inputs, whatever the number of operands: numel(out), depth 1."""
    return Cost(call.out.numel, 1)


register(aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar, aten.masked_fill,
         work="numel(out)", depth="1")(select)


# Ops torch does not tag pointwise but which are one independent operation per output element.
register(
    aten.gelu, aten.silu, aten.relu, aten.relu6, aten.hardtanh, aten.hardswish, aten.hardsigmoid,
    aten.leaky_relu, aten.elu, aten.selu, aten.celu, aten.mish, aten.softplus, aten.glu,
    aten.threshold, aten.prelu, aten._prelu_kernel, aten.log_sigmoid_forward, aten.tanh, aten.sigmoid,
    aten.clamp, aten.clamp_min, aten.clamp_max, aten.logit,
    # overloads torch leaves untagged while their siblings are tagged pointwise
    aten.rsub.Tensor, aten.true_divide.Scalar,
)(elementwise)

# Python's bitwise dunders on tensors (HF's causal-mask builders emit `mask_a & mask_b`); torch tags bitwise_and
# pointwise but not these aliases. Only the tensor overloads: the bool/int ones are scalar arithmetic. The
# in-place `__iand__`, `__ior__`, `__irshift__` take these rules (cost/variants.py).
register(
    aten.__and__.Tensor, aten.__and__.Scalar, aten.__or__.Tensor, aten.__or__.Scalar,
    aten.__rshift__.Tensor, aten.__rshift__.Scalar,
)(elementwise)


@register(aten.diff, work="rows * (n*L - n*(n+1)/2) (+ rows*L with prepend/append)", depth="n (+1)")
def diff(call: OpCall) -> Cost:
    """n-th forward difference along dim: optional prepend/append concatenation (a copy, depth 1), then n
    rounds of neighbour subtraction, round i writing rows * (L - i) elements at depth 1.
    L is the concatenated length along dim; work rows * (n L - n (n + 1) / 2) (+ the copy), depth n (+ 1).
    """
    x = call.args[0]
    order = call.arg("n", 1)
    dim = call.arg("dim", -1)
    extra = [t for t in (call.arg("prepend"), call.arg("append")) if isinstance(t, TensorMeta)]
    length = x.size(dim) + sum((t.size(dim) for t in extra), sympy.S.Zero)
    rows = sympy.cancel(x.numel / x.size(dim))
    cost = Cost(rows * length, 1) if extra else FREE
    for i in range(1, order + 1):
        cost = cost + Cost(rows * (length - i), 1)
    return cost


def copy(call: OpCall) -> Cost:
    """A copy writes each output element once: work numel(out), depth 1."""
    return Cost(call.out.numel, 1)


register(
    aten.pixel_shuffle, aten.pixel_unshuffle, aten.channel_shuffle, aten.native_channel_shuffle,
    aten.fft_fftshift, aten.fft_ifftshift, aten.im2col, aten.diag, aten.diag_embed, aten.diagflat,
    aten.block_diag, aten.tril_indices, aten.triu_indices, aten.kron,
    aten.hann_window, aten.hamming_window, aten.blackman_window, aten.bartlett_window, aten.kaiser_window,
    aten.clone, aten.contiguous, aten._to_copy, aten.to, aten.type_as, aten.copy, aten.lift_fresh_copy,
    aten.cat, aten.stack, aten.hstack, aten.vstack, aten.repeat, aten.tile, aten.flip, aten.roll,
    aten.constant_pad_nd, aten.pad, aten.reflection_pad1d, aten.reflection_pad2d, aten.reflection_pad3d,
    aten.replication_pad1d, aten.replication_pad2d, aten.replication_pad3d,
    aten.expand_copy, aten.permute_copy, aten.view_copy, aten.transpose_copy, aten.unsqueeze_copy,
    aten.squeeze_copy, aten.slice_copy, aten.select_copy, aten.split_copy, aten.alias_copy,
    aten.slice_scatter, aten.select_scatter, aten.diagonal_scatter, aten.as_strided_scatter,
    aten.tril, aten.triu, aten.fill, aten.zero,
    aten.zeros, aten.ones, aten.full, aten.zeros_like, aten.ones_like, aten.full_like,
    aten.new_zeros, aten.new_ones, aten.new_full, aten.scalar_tensor, aten.arange, aten.linspace,
    aten.eye, aten.rand, aten.randn, aten.rand_like, aten.randn_like, aten.randint, aten.randint_like,
    aten.bernoulli, aten.normal, aten.uniform, aten.normal_,
    work="numel(out)", depth="1",
)(copy)


def allocation(call: OpCall) -> Cost:
    """Uninitialised allocation computes nothing."""
    return FREE


register(aten.empty, aten.empty_like, aten.new_empty, aten.empty_strided, aten.new_empty_strided, aten.empty_permuted,
         work="0", depth="0")(allocation)


@register(aten.dropout, aten.native_dropout, aten.feature_dropout, aten.alpha_dropout,
          work="training: 2 numel; eval or p = 0: 0", depth="training: 2; eval: 0")
def dropout(call: OpCall) -> Cost:
    """Dropout in eval is the identity (free); in training a mask draw and a multiply: 2 numel, depth 2."""
    train = call.arg("train", call.arg("train", True))
    if train is False or call.arg("p", 0.5) == 0:
        return FREE
    return Cost(2 * call.out.numel, 2)
