"""What a generation analysis captures: the prefill and decode-step model specs, and the names of their sizes."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import sympy
import torch

from depthscope.errors import InputError
from depthscope.model_file import ModelSpec
from depthscope.symbols import size_symbol

CACHE_LENGTH = "c"  # the decode step's past length
NEW_TOKENS = "T"  # tokens generated after the prompt
CAPACITY = "C"  # a static cache's slots


@dataclass
class GenerationSpecs:
    """The prefill and one decode step as model specs, with the Dims they share."""

    prefill: ModelSpec
    step: ModelSpec
    prompt_length: str | int  # n's Dim name, or the prompt's static length
    batch: str | None  # b's Dim name (None: a static batch)
    capture: str  # how the cache was captured, one sentence for the reports
    cache_bytes: sympy.Expr = sympy.S.Zero  # the cache a decode step reads, in b and c
    weight_bytes: int = 0  # the model's parameters (each shared one once): read once per step
    static_cache: bool = False  # transformers' cache_implementation = "static"
    context: Callable = contextlib.nullcontext  # entered around every capture
    retry_cache_max: Callable | None = None  # max -> a step spec with c's Dim bounded there


def prompt_dims(spec: ModelSpec, name: str, where: str) -> tuple[object, object]:
    """The Dims (or None) on axes 0 (batch) and 1 (sequence) of the prompt input called `name`."""
    shapes = spec.dynamic_shapes or {}
    entry = shapes.get(name) if isinstance(shapes, dict) else None
    if entry is None:
        return None, None
    if not isinstance(entry, dict):
        raise InputError(f"{where}: --generate reads the batch and sequence Dims of `{name}` from dynamic_shapes as "
                         "{0: Dim('b'), 1: Dim('n')}")
    return entry.get(0), entry.get(1)


def dim_name(dim) -> str | None:
    """A Dim's root name, None for None, Dim.AUTO/STATIC or a static int."""
    if isinstance(dim, torch.export.Dim):
        return (getattr(dim, "root", None) or dim).__name__
    return None


def check_names(batch: str | None, length: str | None, where: str) -> None:
    """The user's Dims must not take the names generation adds (c, T, C)."""
    for name in (batch, length):
        if name in (CACHE_LENGTH, NEW_TOKENS, CAPACITY):
            raise InputError(f"{where}: the prompt's Dim {name!r} takes a name --generate uses for its own sizes "
                             f"({CACHE_LENGTH}: the cache length, {NEW_TOKENS}: new tokens, {CAPACITY}: a static "
                             "cache's capacity); rename it")


def stored_bytes(tensors, axes, batch: str | None) -> sympy.Expr:
    """Bytes of the cache tensors with axes {axis: "b" or "c"} as symbols: numel times element size, summed."""
    total = sympy.S.Zero
    for tensor, kinds in zip(tensors, axes):
        sizes = [size_symbol(CACHE_LENGTH) if kinds.get(i) == "c" else
                 size_symbol(batch) if kinds.get(i) == "b" and batch else sympy.Integer(s)
                 for i, s in enumerate(tensor.shape)]
        total += sympy.Mul(*sizes) * tensor.element_size()
    return sympy.expand(total)


def parameter_bytes(model) -> int:
    """Bytes of the model's parameters, each shared (tied) parameter once."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def cache_dim(max_len: int | None) -> torch.export.Dim:
    """The decode step's past-length Dim c (min 2: export specialises 0 and 1)."""
    return torch.export.Dim(CACHE_LENGTH, min=2, max=max_len) if max_len else torch.export.Dim(CACHE_LENGTH, min=2)


__all__ = ["CACHE_LENGTH", "CAPACITY", "GenerationSpecs", "NEW_TOKENS", "cache_dim", "check_names", "dim_name",
           "parameter_bytes", "prompt_dims", "stored_bytes"]
