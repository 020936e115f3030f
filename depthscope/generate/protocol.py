"""The model-file protocol for generation: `decode_step(model, token, cache)` and `make_cache(batch, length)`.

`make_cache(batch, length)` returns a cache holding `length` past tokens: a tensor, or tuples, lists and dicts of
tensors (their values do not matter, only their shapes). It is called at two sizes; an axis whose size is the
length becomes the Dim c, one whose size is the batch takes the prompt's batch Dim, every other axis must keep its
size. `decode_step(model, token, cache)` runs one token of shape (batch, 1) (the prompt's dtype) and returns what
the next step needs. An optional `prefill(model, tokens)` is the forward over the prompt that writes the cache;
without it the prefill is the model's own forward on `example_inputs`.
"""

from __future__ import annotations

import inspect
import os

import torch
import torch.utils._pytree as pytree

from depthscope.errors import DepthscopeError, InputError
from depthscope.generate.specs import (GenerationSpecs, cache_dim, check_names, dim_name, parameter_bytes, prompt_dims,
                                       stored_bytes)
from depthscope.guard import exception_text, user_code
from depthscope.model_file import ModelSpec, user_location

NAMES = ("decode_step", "make_cache")


def has_protocol(namespace: dict | None) -> bool:
    return bool(namespace) and any(name in namespace for name in NAMES)


class _Step(torch.nn.Module):
    """decode_step(model, token, cache) as a module whose inputs export can give Dims."""

    def __init__(self, model, fn):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, token, cache):
        return self.fn(self.model, token, cache)


class _Prefill(torch.nn.Module):
    """prefill(model, tokens) as a module."""

    def __init__(self, model, fn):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, tokens):
        return self.fn(self.model, tokens)


def _call(fn, what: str, spec: ModelSpec, *args):
    where = spec.source or spec.name
    abspath = os.path.abspath(spec.source) if spec.source else None
    try:
        with user_code(f"calling `{what}` in", where, abspath):
            return fn(*args)
    except DepthscopeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model file's error
        loc = user_location(exc, abspath, spec.source) if spec.source else where
        raise InputError(f"{loc}: `{what}` raised {type(exc).__name__}: {exception_text(exc)}") from exc


def _axes(first, second, sizes, where: str, path: str) -> dict:
    """{axis: "b" or "c"} for one cache tensor built at sizes (b1, c1) and (b2, c2)."""
    (b1, c1), (b2, c2) = sizes
    if not isinstance(first, torch.Tensor) or not isinstance(second, torch.Tensor):
        raise InputError(f"{where}: make_cache's {path} is a {type(first).__name__}; the cache holds tensors "
                         "(in tuples, lists or dicts)")
    if first.dim() != second.dim():
        raise InputError(f"{where}: make_cache's {path} has {first.dim()} axes at one size and {second.dim()} at another")
    out = {}
    for axis, (x, y) in enumerate(zip(first.shape, second.shape)):
        if (x, y) == (c1, c2):
            out[axis] = "c"
        elif (x, y) == (b1, b2):
            out[axis] = "b"
        elif x != y:
            raise InputError(f"{where}: make_cache's {path} axis {axis} is {x} for make_cache({b1}, {c1}) and {y} for "
                             f"make_cache({b2}, {c2}); an axis must be the batch, the length or fixed")
    return out


def protocol_specs(spec: ModelSpec) -> GenerationSpecs:
    """The prefill and decode-step specs of a model file that defines decode_step and make_cache."""
    where = spec.source or spec.name
    ns = spec.namespace or {}
    missing = [name for name in NAMES if not callable(ns.get(name))]
    if missing:
        raise InputError(f"{where}: --generate with a model file's own decode step needs {' and '.join(NAMES)} "
                         f"(functions); {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing "
                         "(docs/model-files.md)")
    prefill_fn = ns.get("prefill")
    if prefill_fn is not None and not callable(prefill_fn):
        raise InputError(f"{where}: `prefill` must be a function prefill(model, tokens)")
    if not spec.example_inputs or not isinstance(spec.example_inputs[0], torch.Tensor) \
            or spec.example_inputs[0].dim() < 2:
        raise InputError(f"{where}: --generate takes the prompt from example_inputs[0]: a tensor of shape "
                         "(batch, prompt length, ...)")
    prompt = spec.example_inputs[0]
    first = next(iter(inspect.signature(spec.model.forward).parameters), None)
    batch, length = prompt_dims(spec, first, where) if first else (None, None)
    check_names(dim_name(batch), dim_name(length), where)
    b0, n0 = int(prompt.shape[0]), int(prompt.shape[1])
    sizes = ((b0, n0), (b0 + 1, n0 + 3))
    caches = [_call(ns["make_cache"], "make_cache", spec, b, c) for b, c in sizes]
    leaves, tree = pytree.tree_flatten(caches[0])
    other, tree2 = pytree.tree_flatten(caches[1])
    if tree != tree2 or not leaves:
        raise InputError(f"{where}: make_cache must return tensors in the same structure at every size")
    axes = [_axes(x, y, sizes, where, f"leaf {i}") for i, (x, y) in enumerate(zip(leaves, other))]

    def step_spec(max_len: int | None) -> ModelSpec:
        c = cache_dim(max_len)
        dims = {"b": batch if dim_name(batch) else None, "c": c}
        shapes = [{a: dims[k] for a, k in ax.items() if dims[k] is not None} or None for ax in axes]
        spec_tree = pytree.tree_unflatten(shapes, tree)
        token = prompt[:, -1:].clone()  # a view would export with its base tensor's sizes
        return ModelSpec(_Step(spec.model, ns["decode_step"]), (token, caches[0]), {},
                         {"token": {0: batch} if dim_name(batch) else None, "cache": spec_tree},
                         name=f"{spec.name} decode step", source=spec.source, namespace=spec.namespace)

    if prefill_fn is not None:
        prefill = ModelSpec(_Prefill(spec.model, prefill_fn), (prompt,), {}, {"tokens": {0: batch, 1: length}},
                            name=f"{spec.name} prefill", source=spec.source, namespace=spec.namespace)
        capture = "the prefill is the file's prefill(model, tokens)"
    else:
        prefill = spec
        capture = "the prefill is the model's forward on example_inputs"
    capture += "; the decode step is its decode_step(model, token, cache) with make_cache's tensors as inputs"
    return GenerationSpecs(prefill, step_spec(None), dim_name(length) or n0, dim_name(batch), capture,
                           cache_bytes=stored_bytes(leaves, axes, dim_name(batch)),
                           weight_bytes=parameter_bytes(spec.model), retry_cache_max=step_spec)


__all__ = ["NAMES", "has_protocol", "protocol_specs"]
