"""Sorting, selection, compaction and searching.

Sorting uses Batcher's bitonic network (Batcher 1968): a row of k keys is sorted by L(L+1)/2 stages of
compare-exchanges, L = ceil(log2 k), each stage a matching of at most floor(k/2) comparators. Work counts the
comparators (values travel with their indices for free), depth the stages. topk, kthvalue, median, mode and
msort sort the row; randperm sorts random keys.

Data-dependent compaction (nonzero, masked_select, unique) is a prefix sum of the keep-flags (a work-efficient
scan, Blelloch CMU-CS-90-190: 2N work, depth 2 ceil(log2 N)) followed by a scatter of the kept elements to their
offsets (depth 1). Costs are in terms of the input, never of the data-dependent output size.
"""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import FREE, Cost
from depthscope.symbols import ONE, clog2, numel
from depthscope.cost.rules.indexing import broadcast_shape
from depthscope.cost.rules.reduction import scan_cost
from depthscope.cost.registry import OpCall, TensorMeta, register

aten = ops.aten


def bitonic_stages(k) -> sympy.Expr:
    """L (L + 1) / 2 stages for k keys, L = ceil(log2 k)."""
    lg = clog2(k)
    return sympy.expand(lg * (lg + 1) / 2)


def bitonic_sort(rows, k) -> Cost:
    """rows independent bitonic sorts of k keys: rows * floor(k/2) * L(L+1)/2 compare-exchanges, depth L(L+1)/2."""
    stages = bitonic_stages(k)
    return Cost(rows * sympy.floor(sympy.S(k) / 2) * stages, stages)


def _row(x: TensorMeta, dim) -> tuple:
    """(rows, k): the length k of the sorted axis and how many independent rows there are."""
    if not x.ndim:
        return ONE, ONE
    k = x.shape[dim]
    return sympy.cancel(x.numel / k), k


def _dim(call: OpCall, default=-1):
    dim = call.arg("dim", default)
    return default if dim is None else dim


@register(aten.sort, aten.argsort, aten.msort, aten.topk, aten.kthvalue,
          work="rows * floor(k/2) * L*(L+1)/2, L = ceil(log2 k), k = length of the sorted row",
          depth="L*(L+1)/2 (bitonic network)")
def sort(call: OpCall) -> Cost:
    """Bitonic sort of every row along dim (msort: dim 0); topk and kthvalue sort the row and keep a prefix."""
    x = call.args[0]
    dim = 0 if str(call.op).startswith("aten.msort") else _dim(call)
    return bitonic_sort(*_row(x, dim))


@register(aten.median, aten.nanmedian,
          work="rows * floor(k/2) * L*(L+1)/2 (no dim: one row of numel)", depth="L*(L+1)/2")
def median(call: OpCall) -> Cost:
    """The median is the middle of the sorted row; without a dim, of all elements."""
    x = call.args[0]
    dim = call.arg("dim")
    if dim is None or not x.ndim:
        return bitonic_sort(ONE, x.numel)
    return bitonic_sort(*_row(x, dim))


@register(aten.mode,
          work="sort + 4 numel (adjacent compare, run-length scan, argmax)",
          depth="L*(L+1)/2 + 1 + 3 ceil(log2 k)")
def mode(call: OpCall) -> Cost:
    """Sort the row, flag run starts, count run lengths with a scan, take the argmax of the counts."""
    x = call.args[0]
    rows, k = _row(x, _dim(call))
    n = x.numel
    return bitonic_sort(rows, k) + Cost(n, 1) + scan_cost(x, k) + Cost(n, clog2(k))


@register(aten.randperm, work="n + floor(n/2) * L*(L+1)/2, L = ceil(log2 n)", depth="1 + L*(L+1)/2")
def randperm(call: OpCall) -> Cost:
    """A random permutation: draw n random keys, sort them (the permutation is the argsort)."""
    n = call.args[0]
    return Cost(n, 1) + bitonic_sort(ONE, n)


# ---------------------------------------------------------------------------------------------
# Compaction


def compaction(n, width=ONE) -> Cost:
    """Prefix sum of n keep-flags (2n work, depth 2 ceil(log2 n)), then scatter each kept element (width values)
    to its offset (n * width work, depth 1)."""
    return Cost(2 * n, 2 * clog2(n)) + Cost(n * width, 1)


@register(aten.nonzero, aten.argwhere, aten.nonzero_static, aten.where.default,
          work="N (flags) + 2 N (scan) + N * ndim (scatter), N = numel(in)", depth="1 + 2 ceil(log2 N) + 1")
def nonzero(call: OpCall) -> Cost:
    """Flag the nonzeros, scan the flags, scatter every kept element's ndim coordinates."""
    x = call.args[0]
    n = x.numel
    return Cost(n, 1) + compaction(n, max(x.ndim, 1))


@register(aten.masked_select, work="2 N (scan of the mask) + N (scatter), N = numel(broadcast(self, mask))",
          depth="2 ceil(log2 N) + 1")
def masked_select(call: OpCall) -> Cost:
    x, mask = call.args[0], call.args[1]
    return compaction(numel(broadcast_shape(x.shape, mask.shape)))


@register(aten.masked_scatter, work="2 N (scan of the mask) + N (copy self) + N (read source, select), "
          "N = numel(broadcast(self, mask))", depth="2 ceil(log2 N) + 1")
def masked_scatter(call: OpCall) -> Cost:
    """The inverse of masked_select: the i-th set position takes source[i], so every set position needs the count
    of set flags before it, the prefix sum masked_select has (2 N work, depth 2 ceil(log2 N)); then it reads its
    source element and selects it over self's (N, depth 1). The copy of self (N, depth 1) runs beside the scan."""
    x, mask = call.args[0], call.args[1]
    n = numel(broadcast_shape(x.shape, mask.shape))
    return Cost(2 * n, 2 * clog2(n)) + Cost(n, 1) + Cost(n, 0)


def _slice_compare(width) -> Cost:
    """Compare two slices of `width` elements lexicographically: compare elementwise (depth 1), then find the first
    difference with a tree (width work, depth ceil(log2 width)); a scalar compare is one operation."""
    if width == 1:
        return Cost(1, 1)
    return Cost(2 * width, 1 + clog2(width))


def _unique_extras(call: OpCall, k, inverse_numel) -> Cost:
    """return_inverse: scatter each element's group id back (inverse_numel, depth 1); return_counts: difference of
    the run starts (k, depth 1). Both run in parallel."""
    cost = FREE
    if call.arg("return_inverse", False):
        cost = cost | Cost(inverse_numel, 1)
    if call.arg("return_counts", False):
        cost = cost | Cost(k, 1)
    return cost


def unique_slices(call: OpCall, x: TensorMeta, dim, sort_first: bool) -> Cost:
    """unique over k slices of width w along dim (w = 1 for the flattened input): [sort the slices
    lexicographically,] compare neighbours, compact the first of every run."""
    if dim is None or not x.ndim:
        k, width = x.numel, ONE
    else:
        k = x.shape[dim]
        width = sympy.cancel(x.numel / k)
    compare = _slice_compare(width)
    cost = FREE
    if sort_first:
        stages = bitonic_stages(k)
        comparators = sympy.floor(sympy.S(k) / 2) * stages
        cost = Cost(comparators * compare.work, stages * compare.depth)
    cost = cost + Cost(k * compare.work, compare.depth)  # each slice against its predecessor
    return cost + compaction(k, width) + _unique_extras(call, k, x.numel)


@register(aten._unique2, aten._unique, aten.unique_dim,
          work="sort (bitonic over k slices of width w; w = 1 without dim) + adjacent compare + 2k scan + k*w scatter",
          depth="L*(L+1)/2 * c + c + 2 ceil(log2 k) + 1 (+1 inverse/counts), c = compare depth (1, or 1 + ceil(log2 w))")
def unique(call: OpCall) -> Cost:
    """unique = sort + adjacent compare + compaction (torch's unsorted CPU hash path is costed as the sort too)."""
    x = call.args[0]
    dim = call.arg("dim") if str(call.op).startswith("aten.unique_dim") else None
    return unique_slices(call, x, dim, sort_first=True)


@register(aten.unique_consecutive, aten.unique_dim_consecutive,
          work="adjacent compare + 2k scan + k*w scatter", depth="c + 2 ceil(log2 k) + 1 (+1 inverse/counts)")
def unique_consecutive(call: OpCall) -> Cost:
    """Runs of equal neighbours: no sort, only the adjacent compare and the compaction."""
    x = call.args[0]
    return unique_slices(call, x, call.arg("dim"), sort_first=False)


@register(aten.repeat_interleave,
          work="int repeats: numel(out); tensor repeats: 2k (scan of repeats) + numel(out)",
          depth="1; tensor repeats: 2 ceil(log2 k) + 1")
def repeat_interleave(call: OpCall) -> Cost:
    """Integer repeats are a copy; tensor repeats need the output offsets: a scan of the k repeats, then a fill."""
    repeats = call.arg("repeats")
    if not isinstance(repeats, TensorMeta):
        if str(call.op).startswith("aten.repeat_interleave.Tensor"):
            repeats = call.args[0]
        else:
            return Cost(call.out.numel, 1)
    k = repeats.numel
    # the output length is data dependent unless output_size is given (export then gives it an unbacked size)
    written = call.out.numel
    given = call.arg("output_size")
    if given is not None:
        written = sympy.cancel(written / call.out.shape[call.arg("dim") or 0] * given) if call.out.ndim else given
    return Cost(2 * k, 2 * clog2(k)) + Cost(written, 1)


# ---------------------------------------------------------------------------------------------
# Searching and counting


@register(aten.searchsorted, aten.bucketize,
          work="queries * ceil(log2(k + 1))", depth="ceil(log2(k + 1)), k = length of the sorted boundaries")
def searchsorted(call: OpCall) -> Cost:
    """Binary search per query: ceil(log2(k + 1)) dependent comparisons, all queries in parallel."""
    name = str(call.op)
    if name.startswith("aten.bucketize"):
        values, boundaries = call.args[0], call.args[1]
        k = boundaries.numel
    else:
        boundaries, values = call.args[0], call.args[1]
        k = boundaries.shape[-1] if boundaries.ndim else ONE
    queries = values.numel if isinstance(values, TensorMeta) else ONE
    steps = clog2(k + 1)
    return Cost(queries * steps, steps)


@register(aten.histc, aten.bincount,
          work="N (bin index) + bins + N (accumulating scatter)", depth="1 + 2 + ceil(log2 N) (bincount: + ceil(log2 N) max)")
def histogram(call: OpCall) -> Cost:
    """Compute each element's bin, then an accumulating scatter into the bins (up to N values collide)."""
    x = call.args[0]
    n = x.numel
    if str(call.op).startswith("aten.bincount"):
        # the number of bins is max(x) + 1 (data dependent): a max tree first, bins not counted
        return Cost(n, clog2(n)) + Cost(2 * n, 2 + clog2(n))
    return Cost(n, 1) + Cost(call.out.numel + n, 2 + clog2(n))
