"""The library entry points: analyze a module or a model file."""

from __future__ import annotations

import warnings

import torch

from depthscope.engine.analysis import Report, analyze_captured
from depthscope.capture.captured import capture
from depthscope.model_file import ModelSpec, load_model_file
from depthscope.errors import CaptureError, InputError
from depthscope.engine.fitted import analyze_fitted
from depthscope.engine.hyper import analyze_hyper
from depthscope.cost.registry import resolve_op

ENGINES = ("auto", "symbolic", "fitted")


def analyze(model, example_inputs=(), example_kwargs=None, dynamic_shapes=None, *,
            name: str | None = None, rules: dict | None = None, train: bool = False, loss=None,
            engine: str = "auto", on_fallback=None, symbolic=()) -> Report:
    """Export `model` with `dynamic_shapes` (torch.export Dims) and return its work and depth as formulas.

    `rules` maps ops to cost rules for this call only; `train=True` analyzes forward plus backward of `loss`
    (default: the sum of the outputs). `engine`: "symbolic" (one symbolic export), "fitted" (exact counts at
    a sweep of sizes, fitted), or "auto" (symbolic, falling back to fitted when export cannot stay symbolic;
    `on_fallback(reason)` is told why, default a warning). With `symbolic=("d", ...)`, `model` (and optionally
    `example_inputs` and `dynamic_shapes`) are factories whose integer keyword parameters of those names become
    symbols (docs/hyperparameters.md).
    """
    if symbolic:
        ns = {"model": model, "example_inputs": example_inputs, "example_kwargs": example_kwargs or {},
              "dynamic_shapes": dynamic_shapes, "loss": loss}
        return analyze_hyper(ns, name or getattr(model, "__name__", "model"), list(symbolic), train=train,
                             rules=normalize_rules(rules))
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    spec = ModelSpec(model, tuple(example_inputs), dict(example_kwargs or {}), dynamic_shapes,
                     name=name or type(model).__name__, loss=loss)
    return analyze_spec(spec, rules=rules, train=train, engine=engine, on_fallback=on_fallback)


def analyze_file(path: str, *, rules: dict | None = None, train: bool = False, engine: str = "auto",
                 on_fallback=None, symbolic=None) -> Report:
    """Load a model file (see docs/model-files.md) and analyze it. `symbolic` names factory hyperparameters to
    keep as symbols (default: the file's `symbolic` tuple, if any)."""
    spec = load_model_file(path)
    names = list(symbolic) if symbolic else list(spec.namespace.get("symbolic") or ())
    if names:
        if any(not isinstance(x, str) for x in names):
            raise InputError(f"{path}: `symbolic` must be a tuple of hyperparameter names")
        return analyze_hyper(spec.namespace, path, names, train=train, rules=normalize_rules(rules))
    return analyze_spec(spec, rules=rules, train=train, engine=engine, on_fallback=on_fallback)


def analyze_spec(spec: ModelSpec, *, rules=None, train: bool = False, engine: str = "auto", on_fallback=None) -> Report:
    """Analyze a loaded ModelSpec with the chosen engine."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    rules = normalize_rules(rules)
    if engine == "fitted":
        return analyze_fitted(spec, train=train, rules=rules)
    try:
        return analyze_captured(capture(spec, train=train), rules=rules)
    except CaptureError as exc:
        if engine == "symbolic" or not spec.dynamic_shapes:
            raise
        reason = f"symbolic capture failed ({exc}); falling back to the fitted engine"
        if on_fallback is None:
            warnings.warn(reason, stacklevel=3)
        else:
            on_fallback(reason)
    return analyze_fitted(spec, train=train, rules=rules)


def normalize_rules(rules: dict | None) -> dict | None:
    """Per-call rules keyed by any op reference (overload, packet, custom op, name) -> {overload: rule}."""
    if not rules:
        return None
    out = {}
    for op, fn in rules.items():
        if not callable(fn):
            raise InputError(f"the rule for {op!r} is not callable")
        try:
            overloads = resolve_op(op)
        except (ValueError, AttributeError) as exc:
            raise InputError(f"rules: {exc}") from exc
        for overload in overloads:
            out[overload] = fn
    return out
