"""Gathers, scatters and embedding lookups: one independent move per element, depth 1 (CMU 15-210 cost spec).

Accumulating scatters are reductions over the source axis: up to k source values (k = the length of the source
axis that maps onto one destination) collide on one destination and are combined by a tree of depth ceil(log2 k).
"""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import Cost
from depthscope.symbols import ONE, clog2, numel
from depthscope.cost.registry import OpCall, TensorMeta, register

aten = ops.aten


def broadcast_shape(*shapes) -> tuple:
    """The broadcast of symbolic shapes (aligned right; a size-1 dim takes the other operand's size)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        size = ONE
        for s in shapes:
            j = len(s) - ndim + i
            if j >= 0 and s[j] != 1:
                size = s[j]
                break
        out.append(size)
    return tuple(out)


@register(aten.embedding, aten.gather, aten.index, aten.index_select, aten.take, aten.take_along_dim,
          aten._unsafe_index, aten.one_hot, work="numel(out)", depth="1")
def gather(call: OpCall) -> Cost:
    return Cost(call.out.numel, 1)


@register(aten.scatter, aten.index_copy, aten.masked_scatter, aten.index_fill,
          work="numel(self) + numel(src)", depth="2")
def scatter(call: OpCall) -> Cost:
    """Without accumulation each destination is written by one source element: copy, then write."""
    src = [t for t in call.tensors()[1:]]
    moved = src[-1].numel if src else call.out.numel
    return Cost(call.out.numel + moved, 2)


def accumulate(out_numel, moved, k) -> Cost:
    """Copy the destination, move every source value to its slot, combine up to k colliding values with a tree."""
    return Cost(out_numel + moved, 2 + clog2(k))


@register(aten.index_put, aten._unsafe_index_put,
          work="numel(self) + numel(values)",
          depth="2; accumulate=True: 2 + ceil(log2 k), k = number of index tuples")
def index_put(call: OpCall) -> Cost:
    values = call.arg("values")
    moved = values.numel if isinstance(values, TensorMeta) else call.out.numel
    if call.arg("accumulate", False):
        indices = [t for t in (call.arg("indices") or ()) if isinstance(t, TensorMeta)]
        k = numel(broadcast_shape(*[t.shape for t in indices])) if indices else moved
        return accumulate(call.out.numel, moved, k)
    return Cost(call.out.numel + moved, 2)


@register(aten.scatter_add, aten.index_add, aten.scatter_reduce, aten.index_reduce,
          work="numel(self) + numel(src)",
          depth="2 + ceil(log2 k), k = index.size(dim) (index_add/index_reduce: len(index))")
def scatter_accumulate(call: OpCall) -> Cost:
    """Accumulating scatter: a copy of self, then up to k source values along the source axis collide on one
    destination: a tree over them."""
    tensors = call.tensors()
    src = tensors[-1]
    index = tensors[1] if len(tensors) > 2 else src
    name = str(call.op)
    if name.startswith(("aten.index_add", "aten.index_reduce")):
        k = index.numel
    else:
        dim = call.arg("dim", 0)
        k = index.size(dim) if index.ndim else ONE
    return accumulate(call.out.numel, src.numel, k)


@register(aten.embedding_bag, aten._embedding_bag, work="2 * numel(indices) * D",
          depth="1 + ceil(log2(numel(indices) / bags))")
def embedding_bag(call: OpCall) -> Cost:
    """Gather every index's row, then reduce each bag with a tree. Bags of a 2-D input are equal (n indices each):
    exact. With explicit offsets the bag sizes are data: the tree is charged for the mean bag, numel / bags."""
    weight, indices = call.args[0], call.args[1]
    dim = weight.shape[-1]
    bag = _mean_bag(call, indices)
    return Cost(indices.numel * dim, 1) + Cost(indices.numel * dim, clog2(bag))


def _mean_bag(call: OpCall, indices: TensorMeta):
    offsets = call.arg("offsets")
    if not isinstance(offsets, TensorMeta) or indices.ndim != 1:
        return indices.shape[-1] if indices.ndim == 2 else indices.numel
    bags = offsets.numel - (1 if call.arg("include_last_offset", False) else 0)
    return sympy.cancel(indices.numel / bags) if bags != 0 else indices.numel


@register(aten._embedding_bag_backward, aten._embedding_bag_dense_backward, aten.embedding_backward,
          work="numel(grad weight) + numel(indices) * D", depth="2 + ceil(log2 numel(indices))")
def embedding_bag_backward(call: OpCall) -> Cost:
    """The weight gradient is an accumulating scatter of every index's row: rows hit by many indices sum by a tree."""
    indices = call.args[1]
    dim = call.out.shape[-1] if call.out.ndim else sympy.S.One
    return Cost(call.out.numel + indices.numel * dim, 2 + clog2(indices.numel))


__all__ = ["accumulate", "broadcast_shape", "gather", "scatter"]
