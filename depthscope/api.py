"""The library entry points: analyze a module or a model file."""

from __future__ import annotations

import torch

from .analysis import Report, analyze_captured
from .capture import ModelSpec, capture, load_model_file
from .errors import InputError


def analyze(model: torch.nn.Module, example_inputs=(), example_kwargs=None, dynamic_shapes=None, *,
            name: str | None = None, rules: dict | None = None) -> Report:
    """Export `model` with `dynamic_shapes` (torch.export Dims) and return its symbolic work and depth."""
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    spec = ModelSpec(model, tuple(example_inputs), dict(example_kwargs or {}), dynamic_shapes,
                     name=name or type(model).__name__)
    return analyze_captured(capture(spec), rules=rules)


def analyze_file(path: str, *, rules: dict | None = None) -> Report:
    """Load a model file (see docs/model-files.md) and analyze it."""
    spec = load_model_file(path)
    return analyze_captured(capture(spec), rules=rules)
