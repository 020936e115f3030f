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


def _source(call: OpCall):
    """The tensor of values a scatter moves (src / source / values), or None for a scalar value."""
    for name in ("src", "source", "values"):
        value = call.arg(name)
        if isinstance(value, TensorMeta):
            return value
    return None


def _moved(call: OpCall, index: TensorMeta) -> sympy.Expr:
    """How many values a scatter moves: one per index entry (torch reads src only where index has entries);
    index_add / index_copy / index_reduce move whole slices of source."""
    src = _source(call)
    if str(call.op).startswith("aten.index_") and src is not None:
        return src.numel
    return index.numel


@register(aten.scatter.src, aten.scatter.value, aten.index_copy,
          work="numel(self) + numel(index) (index_copy: numel(source))", depth="2")
def scatter(call: OpCall) -> Cost:
    """Without accumulation every destination keeps one of the values aimed at it (torch: an unspecified one):
    copy self, then write each value to its address (depth 1 each; writes are random access, collisions are
    resolved by the memory, not combined)."""
    index = call.arg("index")
    return Cost(call.out.numel + _moved(call, index), 2)


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


def _colliding(call: OpCall, index: TensorMeta) -> sympy.Expr:
    """The most values one destination can receive: scatter's sources along dim share a column, so
    k = index.size(dim); index_add / index_reduce: every entry of the 1-D index may name the same slice."""
    if str(call.op).startswith("aten.index_"):
        return index.numel
    dim = call.arg("dim", 0)
    return index.size(dim) if index.ndim else ONE


@register(aten.scatter_add, aten.index_add, aten.scatter.reduce, aten.scatter.value_reduce, aten.scatter_reduce,
          aten.index_reduce,
          work="numel(self) + moved (numel(index); index_add/index_reduce: numel(source)); mean: + moved "
               "(counts) + numel(self) (divide)",
          depth="2 + ceil(log2 k) (mean: + 1), k = index.size(dim) (index_add/index_reduce: len(index))")
def scatter_accumulate(call: OpCall) -> Cost:
    """Accumulating scatter (scatter_add, index_add, scatter(reduce="add"/"multiply"), scatter_reduce and
    index_reduce with sum, prod, amax, amin, mean): a copy of self (depth 1) while every value moves to its
    destination (depth 1); up to k values collide on one destination and are combined with self's value by a
    tree (ceil(log2 k) + 1: k + 1 values with include_self, k without, then the pick between the result and
    self for a destination nothing reached). reduce="mean" also counts the values reaching each destination
    (a tree over ones, in parallel with the sum) and divides (+1 depth, + numel(self) work)."""
    index = call.arg("index")
    moved = _moved(call, index)
    cost = accumulate(call.out.numel, moved, _colliding(call, index))
    if call.arg("reduce") == "mean":
        cost = Cost(cost.work + moved, cost.depth) + Cost(call.out.numel, 1)
    return cost


@register(aten.index_fill, work="numel(self) + len(index) * slice, slice = numel(self) / self.size(dim)",
          depth="2")
def index_fill(call: OpCall) -> Cost:
    """Copy self, then every index entry writes the value over its whole slice along dim (len(index) * slice
    writes; entries naming the same slice write the same value, so nothing is combined)."""
    x, index = call.args[0], call.arg("index")
    dim = call.arg("dim", 0)
    slice_ = sympy.cancel(x.numel / x.size(dim)) if x.ndim else ONE
    return Cost(call.out.numel + index.numel * slice_, 2)


@register(aten.embedding_bag, aten._embedding_bag, work="2 * numel(indices) * D (+ numel(indices) * D weights)",
          depth="1 + ceil(log2(longest bag)) (+1 per_sample_weights)")
def embedding_bag(call: OpCall) -> Cost:
    """Gather every index's row (times its per_sample_weight: one more step), then reduce each bag with a tree.
    Bags of a 2-D input, or with offsets from an `arange(0, N, k)` in the graph (what nn.EmbeddingBag passes for
    one), hold k indices each: exact. Offsets that are data allow one bag to hold every index, and the tree is
    charged for that worst case, ceil(log2 numel(indices)) (the depth oracle's uneven bags)."""
    weight, indices = call.args[0], call.args[1]
    dim = weight.shape[-1]
    bag = _longest_bag(call, indices)
    cost = Cost(indices.numel * dim, 1)
    if isinstance(call.arg("per_sample_weights"), TensorMeta):
        cost = cost + Cost(indices.numel * dim, 1)
    return cost + Cost(indices.numel * dim, clog2(bag))


def _longest_bag(call: OpCall, indices: TensorMeta):
    offsets = call.arg("offsets")
    if not isinstance(offsets, TensorMeta) or indices.ndim != 1:
        return indices.shape[-1] if indices.ndim == 2 else indices.numel
    ramp = offsets.ramp
    if ramp is not None and ramp[0] == 0 and not call.arg("include_last_offset", False) and \
            sympy.expand(ramp[2] - indices.numel) == 0:
        return ramp[1]  # offsets 0, k, 2k, ... below numel(indices): every bag holds k, the last at most k
    return indices.numel


@register(aten._embedding_bag_backward, aten._embedding_bag_dense_backward, aten.embedding_backward,
          work="numel(grad weight) + numel(indices) * D", depth="2 + ceil(log2 numel(indices))")
def embedding_bag_backward(call: OpCall) -> Cost:
    """The weight gradient is an accumulating scatter of every index's row: rows hit by many indices sum by a tree."""
    indices = call.args[1]
    dim = call.out.shape[-1] if call.out.ndim else sympy.S.One
    return Cost(call.out.numel + indices.numel * dim, 2 + clog2(indices.numel))


__all__ = ["accumulate", "broadcast_shape", "gather", "scatter"]
