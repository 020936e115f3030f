"""Views, metadata and shape arithmetic: no data moves, so no work and no depth (fvcore's explicit free list)."""

from __future__ import annotations

import operator

from torch import ops

from depthscope.cost.registry import register_free

aten = ops.aten

register_free(
    aten.view, aten._unsafe_view, aten.reshape, aten.permute, aten.transpose, aten.t, aten.expand,
    aten.expand_as, aten.squeeze, aten.unsqueeze, aten.slice, aten.select, aten.split,
    aten.split_with_sizes, aten.chunk, aten.tensor_split, aten.unbind, aten.flatten, aten.unflatten,
    aten.alias, aten.detach, aten.lift_fresh, aten.narrow, aten.as_strided,
    aten.view_as, aten.view_as_real, aten.view_as_complex, aten.movedim, aten.swapaxes,
    aten.diagonal, aten.unfold, aten.real, aten.imag, aten.conj, aten._conj, aten._neg_view, aten.resolve_conj, aten.resolve_neg,
    aten.sym_size, aten.sym_stride, aten.sym_numel, aten.sym_storage_offset,
    aten._assert_tensor_metadata, aten._assert_scalar, aten.sym_constrain_range,
    aten.sym_constrain_range_for_size, aten._assert_async, aten.size, aten.stride, aten.dim, aten.numel,
    aten.is_contiguous, aten.item, aten._local_scalar_dense,
    # metadata only: contiguity queries, resizing storage (resize, and resize_ with it: allocates, computes
    # nothing), broadcasting views
    aten.sym_is_contiguous, aten.resize, aten.broadcast_tensors, aten.broadcast_to, aten.meshgrid,
    aten.unsafe_split, aten.unsafe_chunk, aten.unsafe_split_with_sizes,
)

# Python builtins on tuples and SymInts: selecting an output, or shape arithmetic, never tensor work.
register_free(operator.getitem)
