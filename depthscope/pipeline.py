"""The one pipeline every command and the library use: load a model, pick the engine, build the Analysis."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Callable

import torch

from depthscope.capture.captured import capture
from depthscope.capture.dims import example_sizes, resized_spec
from depthscope.engine import ENGINES
from depthscope.engine.analysis import Analysis, Provenance, build_analysis
from depthscope.engine.fitted import analyze_fitted
from depthscope.engine.hyper import analyze_hyper, hyper_defaults
from depthscope.engine.walk import walk_captured
from depthscope.errors import InputError, ShapeConstraintError
from depthscope.cost.registry import resolve_op
from depthscope.clock import activity
from depthscope.model_file import (ModelSpec, checked_dynamic_shapes, load_model_file, spec_from_namespace,
                                   symbol_name_problem)

@dataclass(frozen=True)
class Subject:
    """A model ready to analyze: its spec, the hyperparameters kept as symbols, and every symbol's example size."""

    spec: ModelSpec
    hyper: tuple[str, ...] = ()
    hyper_defaults: dict | None = None

    @property
    def name(self) -> str:
        return self.spec.source or self.spec.name

    def example_sizes(self) -> dict[str, int]:
        """Each Dim's size in the example inputs and each symbolic hyperparameter's default."""
        return {**example_sizes(self.spec), **(self.hyper_defaults or {})}

    def spec_at(self, sizes: dict[str, int]) -> ModelSpec:
        """The model built at the hyperparameter values in `sizes` with its inputs resized to the Dims there."""
        spec = self.spec
        if self.hyper:
            values = {n: sizes.get(n, self.hyper_defaults[n]) for n in self.hyper}
            spec = spec_from_namespace(spec.namespace, self.name, dict(self.hyper_defaults, **values))
        dims = {k: v for k, v in sizes.items() if k not in self.hyper}
        return resized_spec(spec, {**example_sizes(spec), **dims}) if spec.dynamic_shapes else spec


def load_subject(path: str, symbolic=None) -> Subject:
    """Load a model file; `symbolic` names factory hyperparameters to keep as symbols (default: the file's own)."""
    spec = load_model_file(path)
    names = symbolic if symbolic else spec.namespace.get("symbolic")
    names = () if names is None else ((names,) if isinstance(names, str) else names)
    if not isinstance(names, (tuple, list)) or any(not isinstance(x, str) for x in names):
        raise InputError(f"{path}: `symbolic` must be a tuple of hyperparameter names, e.g. (\"d\",)")
    names = tuple(names)
    for name in names:
        problem = symbol_name_problem(name)
        if problem:
            raise InputError(f"{path}: symbolic hyperparameter {name!r}: {problem} (rename the keyword parameter)")
    if not names:
        return Subject(spec)
    return Subject(spec, names, hyper_defaults(spec.namespace, path, list(names)))


def analyze_subject(subject: Subject, *, rules=None, train: bool = False, engine: str = "auto",
                    on_fallback: Callable[[str], None] | None = None) -> Analysis:
    """The Analysis of a loaded subject with the chosen engine (hyperparameters always take the fitted one)."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    rules = normalize_rules(rules)
    with activity(f"analyzing {subject.name}"):
        if subject.hyper:
            return analyze_hyper(subject.spec.namespace, subject.name, list(subject.hyper), train=train, rules=rules)
        spec = subject.spec
        if engine == "fitted":
            return analyze_fitted(spec, train=train, rules=rules)
        try:
            walked = walk_captured(capture(spec, train=train), rules)
            return build_analysis(walked, Provenance("symbolic", "train" if train else "inference"))
        except ShapeConstraintError as exc:  # only these: any other failure would fail the fitted engine too
            if engine == "symbolic" or not spec.dynamic_shapes:
                raise
            reason = f"symbolic capture failed ({exc}); falling back to the fitted engine"
        if on_fallback is None:
            warnings.warn(reason, stacklevel=3)
        else:
            on_fallback(reason)
        return analyze_fitted(spec, train=train, rules=rules, fallback=reason)


def analyze_file(path: str, *, rules: dict | None = None, train: bool = False, engine: str = "auto",
                 on_fallback=None, symbolic=None) -> Analysis:
    """Load a model file (see docs/model-files.md) and analyze it. `symbolic` names factory hyperparameters to
    keep as symbols (default: the file's `symbolic` tuple, if any)."""
    return analyze_subject(load_subject(path, symbolic), rules=rules, train=train, engine=engine,
                           on_fallback=on_fallback)


def analyze(model, example_inputs=(), example_kwargs=None, dynamic_shapes=None, *,
            name: str | None = None, rules: dict | None = None, train: bool = False, loss=None,
            engine: str = "auto", on_fallback=None, symbolic=()) -> Analysis:
    """Export `model` with `dynamic_shapes` (torch.export Dims) and return its work and depth as formulas.

    `rules` maps ops to cost rules for this call only; `train=True` analyzes forward plus backward of `loss`
    (default: the sum of the outputs). `engine`: "symbolic" (one symbolic export), "fitted" (exact counts at
    a sweep of sizes, fitted), or "auto" (symbolic, falling back to fitted when export cannot stay symbolic;
    `on_fallback(reason)` is told why, default a warning). With `symbolic=("d", ...)`, `model` (and optionally
    `example_inputs` and `dynamic_shapes`) are factories whose integer keyword parameters of those names become
    symbols (docs/hyperparameters.md).
    """
    name = name or (getattr(model, "__name__", "model") if symbolic else type(model).__name__)
    if symbolic:
        ns = {"model": model, "example_inputs": example_inputs, "example_kwargs": example_kwargs or {},
              "dynamic_shapes": dynamic_shapes, "loss": loss}
        spec = replace(spec_from_namespace(ns, name), name=name)
        names = tuple(symbolic)
        return analyze_subject(Subject(spec, names, hyper_defaults(ns, name, list(names))), rules=rules, train=train)
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs, example_kwargs = tuple(example_inputs), dict(example_kwargs or {})
    dynamic_shapes = checked_dynamic_shapes(model, example_inputs, example_kwargs, dynamic_shapes, name)
    spec = ModelSpec(model, example_inputs, example_kwargs, dynamic_shapes, name=name, loss=loss)
    return analyze_subject(Subject(spec), rules=rules, train=train, engine=engine, on_fallback=on_fallback)


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
