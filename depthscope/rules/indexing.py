"""Gathers, scatters and embedding lookups: one independent move per element, depth 1 (CMU 15-210 cost spec).

Accumulating scatters combine colliding values with a tree: depth 1 + ceil(log2 k) for k source entries.
"""

from __future__ import annotations

from torch import ops

from ..cost import Cost
from ..symbols import clog2
from .registry import OpCall, TensorMeta, register

aten = ops.aten


@register(aten.embedding, aten.gather, aten.index, aten.index_select, aten.take, aten.take_along_dim,
          aten.masked_select, aten._unsafe_index, aten.one_hot)
def gather(call: OpCall) -> Cost:
    return Cost(call.out.numel, 1)


@register(aten.scatter, aten.index_copy, aten.masked_scatter, aten.index_fill)
def scatter(call: OpCall) -> Cost:
    """Without accumulation each destination is written by one source element: copy, then write."""
    src = [t for t in call.tensors()[1:]]
    moved = src[-1].numel if src else call.out.numel
    return Cost(call.out.numel + moved, 2)


@register(aten.index_put, aten._unsafe_index_put, aten.index_put_)
def index_put(call: OpCall) -> Cost:
    values = call.arg("values")
    moved = values.numel if isinstance(values, TensorMeta) else call.out.numel
    if call.arg("accumulate", False):
        return Cost(call.out.numel + moved, 2 + clog2(moved))
    return Cost(call.out.numel + moved, 2)


@register(aten.scatter_add, aten.index_add, aten.scatter_reduce, aten.index_reduce)
def scatter_accumulate(call: OpCall) -> Cost:
    """Accumulating scatter: a copy of self, then up to k source values collide on one destination: tree depth."""
    src = call.tensors()[-1]
    return Cost(call.out.numel + src.numel, 2 + clog2(src.numel))


@register(aten.embedding_bag, aten._embedding_bag)
def embedding_bag(call: OpCall) -> Cost:
    """Gather the bag's rows, then reduce each bag: depth 1 + ceil(log2 rows)."""
    weight, indices = call.args[0], call.args[1]
    dim = weight.shape[-1]
    return Cost(indices.numel * dim, 1) + Cost(indices.numel * dim, clog2(indices.numel))
