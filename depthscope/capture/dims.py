"""The Dims of a dynamic-shapes spec: where each sits in the inputs, their ranges, and inputs rebuilt at given sizes."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from depthscope.model_file import ModelSpec
from depthscope.symbols import SymbolInfo


def combine_args(model, args, kwargs) -> dict:
    """The forward's inputs by parameter name (torch.export's own binding of args and kwargs)."""
    from torch.export.dynamic_shapes import _combine_args  # torch's binding; no public equivalent

    return _combine_args(model, args, kwargs)


@dataclass
class DimSlot:
    path: tuple  # where the tensor sits in (args, kwargs)
    axis: int
    dim: object  # torch.export Dim (or derived Dim)


def dim_slots(spec: ModelSpec) -> list[DimSlot]:
    combined = combine_args(spec.model, spec.example_inputs, spec.example_kwargs or {})
    shapes = spec.dynamic_shapes
    if shapes is None:
        return []
    if isinstance(shapes, (list, tuple)):
        shapes = dict(zip(combined, shapes))
    slots: list[DimSlot] = []
    for name, value in combined.items():
        _walk_spec(value, shapes.get(name), (name,), slots)
    return slots


def _walk_spec(value, spec, path, slots):
    if spec is None:
        return
    if isinstance(value, torch.Tensor):
        items = spec.items() if isinstance(spec, dict) else enumerate(spec)
        for axis, dim in items:
            if dim is not None and hasattr(dim, "__name__") and hasattr(dim, "min"):
                slots.append(DimSlot(path, int(axis), dim))
        return
    if isinstance(value, dict) and isinstance(spec, dict):
        for k, v in value.items():
            _walk_spec(v, spec.get(k), path + (k,), slots)
    elif isinstance(value, (list, tuple)) and isinstance(spec, (list, tuple)):
        for i, (v, s) in enumerate(zip(value, spec)):
            _walk_spec(v, s, path + (i,), slots)


def root_dim(dim):
    return getattr(dim, "root", None) or dim


def fit_symbols(spec: ModelSpec) -> dict[str, SymbolInfo]:
    """The root Dims of the spec, by name, with their ranges (min at least 2)."""
    out: dict[str, SymbolInfo] = {}
    for slot in dim_slots(spec):
        root = root_dim(slot.dim)
        lo = max(2, int(getattr(root, "min", 2) or 2))
        hi = getattr(root, "max", None)
        hi = int(hi) if isinstance(hi, int) and hi < 2**62 else None
        out[root.__name__] = SymbolInfo(root.__name__, lo, hi)
    return out


def resized_spec(spec: ModelSpec, sizes: dict[str, int]) -> ModelSpec:
    """The spec with example inputs rebuilt at `sizes` (random values; integer inputs keep their value range)."""
    return replace(spec, **_rebuilt_inputs(spec, sizes.__getitem__), dynamic_shapes=None)


def fixed_spec(spec: ModelSpec, fixed: dict[str, int]) -> ModelSpec:
    """The spec with the Dims named in `fixed` made static at those sizes (inputs rebuilt along their axes, and
    along those of Dims derived from them); the other Dims stay dynamic. Static sizes may be 0 or 1."""
    shapes = _static(spec.dynamic_shapes, set(fixed))
    rebuilt = _rebuilt_inputs(spec, fixed.get)
    return replace(spec, **rebuilt, dynamic_shapes=shapes if _has_dims(shapes) else None)


def _rebuilt_inputs(spec: ModelSpec, size_of) -> dict:
    """args and kwargs with every axis whose root Dim has a size `size_of(name)` (None: leave it) rebuilt there."""
    combined = dict(combine_args(spec.model, spec.example_inputs, spec.example_kwargs or {}))
    wanted: dict[tuple, dict[int, int]] = {}
    for slot in dim_slots(spec):
        root = root_dim(slot.dim)
        value = size_of(root.__name__)
        if value is None:
            continue
        if root is not slot.dim:
            value = int(slot.dim.fn(value))
        wanted.setdefault(slot.path, {})[slot.axis] = value
    for path, axes in wanted.items():
        combined = _replace_at(combined, path, lambda t, axes=axes: _resize(t, axes))
    names = list(combined)
    n_pos = len(spec.example_inputs)
    return {"example_inputs": tuple(combined[k] for k in names[:n_pos]),
            "example_kwargs": {k: combined[k] for k in names[n_pos:]}}


def _is_dim(x) -> bool:
    return x is not None and hasattr(x, "__name__") and hasattr(x, "min")


def _static(shapes, names: set):
    """The dynamic_shapes spec with every Dim whose root is in `names` made static: dropped from an axis dict
    (torch.export keeps the axes a dict leaves out static), Dim.STATIC in an axis tuple."""
    if isinstance(shapes, dict):
        out = {}
        for key, value in shapes.items():
            if _is_dim(value) and root_dim(value).__name__ in names:
                continue
            out[key] = _static(value, names)
        return out
    if isinstance(shapes, (list, tuple)):
        items = [torch.export.Dim.STATIC if _is_dim(v) and root_dim(v).__name__ in names else _static(v, names)
                 for v in shapes]
        return type(shapes)(items)
    return shapes


def _has_dims(shapes) -> bool:
    if isinstance(shapes, dict):
        return any(_has_dims(v) for v in shapes.values())
    if isinstance(shapes, (list, tuple)):
        return any(_has_dims(v) for v in shapes)
    return _is_dim(shapes)


def dim_names(spec: ModelSpec) -> set[str]:
    """The names of the root Dims in the spec's dynamic_shapes: the sizes a concrete capture can fix."""
    return {root_dim(slot.dim).__name__ for slot in dim_slots(spec)}


def _replace_at(tree, path, fn):
    if not path:
        return fn(tree)
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        out = dict(tree)
        out[head] = _replace_at(tree[head], rest, fn)
        return out
    items = list(tree)
    items[head] = _replace_at(items[head], rest, fn)
    return type(tree)(items) if not hasattr(tree, "_fields") else type(tree)(*items)


def _resize(t: torch.Tensor, axes: dict[int, int]) -> torch.Tensor:
    shape = list(t.shape)
    for axis, value in axes.items():
        shape[axis] = value
    if t.is_floating_point() or t.is_complex():
        return torch.randn(shape, dtype=t.dtype, device=t.device)
    if t.dtype == torch.bool:
        return torch.rand(shape, device=t.device) > 0.5
    if t.device.type == "meta" or t.numel() == 0:
        return torch.zeros(shape, dtype=t.dtype, device=t.device)
    lo, hi = int(t.min()), int(t.max())
    return torch.randint(lo, hi + 1, shape, dtype=t.dtype, device=t.device)


def example_sizes(spec) -> dict[str, int]:
    """The size each root Dim has in the model file's example inputs ({} when there are no dynamic shapes)."""
    try:
        slots = dim_slots(spec)
        combined = dict(combine_args(spec.model, spec.example_inputs, spec.example_kwargs or {}))
    except Exception:  # noqa: BLE001 - a spec export will reject with a better message later
        return {}
    out: dict[str, int] = {}
    for slot in slots:
        if root_dim(slot.dim) is not slot.dim:
            continue
        value = combined
        try:
            for key in slot.path:
                value = value[key]
            out.setdefault(slot.dim.__name__, int(value.shape[slot.axis]))
        except (KeyError, IndexError, TypeError, AttributeError):
            continue
    return out
