"""The one pipeline every command and the library use: load a model, pick the engine, build the Analysis."""

from __future__ import annotations

import functools
import warnings
import weakref
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Callable

import torch

from depthscope.capture.captured import capture
from depthscope.capture.dims import dim_names, example_sizes, fixed_spec, resized_spec
from depthscope.engine import ENGINES
from depthscope.engine.analysis import Analysis, Provenance, build_analysis
from depthscope.engine.fitted import analyze_fitted
from depthscope.engine.hyper import analyze_hyper, hyper_defaults
from depthscope.engine.walk import walk_captured
from depthscope.errors import EXIT_USAGE, DepthscopeError, InputError, ShapeConstraintError
from depthscope.cost.registry import resolve_op
from depthscope.clock import activity
from depthscope.model_file import (ModelSpec, checked_dynamic_shapes, load_model_file, spec_from_namespace,
                                   symbol_name_problem)
from depthscope.symbols import SymbolInfo, sizes_below

@dataclass(frozen=True)
class Subject:
    """A model ready to analyze: its spec, the hyperparameters kept as symbols, and every symbol's example size."""

    spec: ModelSpec
    hyper: tuple[str, ...] = ()
    hyper_defaults: dict | None = None
    fixed: tuple = ()  # ((Dim name, size), ...): Dims made static at these sizes (analysis_at's concrete capture)

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
    fixed = dict(subject.fixed)
    adjust = functools.partial(fixed_spec, fixed=fixed) if fixed else None
    with activity(f"analyzing {subject.name}" + (f" at {_label(fixed)}" if fixed else "")):
        if subject.hyper:
            return analyze_hyper(subject.spec.namespace, subject.name, list(subject.hyper), train=train, rules=rules,
                                 adjust=adjust)
        spec = adjust(subject.spec) if adjust else subject.spec
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
    subject = load_subject(path, symbolic)
    analysis = analyze_subject(subject, rules=rules, train=train, engine=engine, on_fallback=on_fallback)
    return _with_concrete(subject, analysis, rules=rules, engine=engine, on_fallback=on_fallback)


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
        subject = Subject(spec, names, hyper_defaults(ns, name, list(names)))
        return _with_concrete(subject, analyze_subject(subject, rules=rules, train=train), rules=rules)
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs, example_kwargs = tuple(example_inputs), dict(example_kwargs or {})
    dynamic_shapes = checked_dynamic_shapes(model, example_inputs, example_kwargs, dynamic_shapes, name)
    subject = Subject(ModelSpec(model, example_inputs, example_kwargs, dynamic_shapes, name=name, loss=loss))
    analysis = analyze_subject(subject, rules=rules, train=train, engine=engine, on_fallback=on_fallback)
    return _with_concrete(subject, analysis, rules=rules, engine=engine, on_fallback=on_fallback)


# ---------------------------------------------------------------------------------------------
# Sizes below a Dim's min: torch.export specialises sizes 0 and 1, so a Dim's range starts at 2 or more and
# batch 1 is outside every formula; a second capture with that Dim static at the size counts it exactly.

# id(model) -> {(inputs, fixed sizes, mode, engine, rules): (inputs, Analysis)}, emptied when the model is freed
_CONCRETE: dict = {}


def analysis_at(subject: Subject, analysis: Analysis, sizes: dict[str, int], *, rules=None, engine: str = "auto",
                on_fallback: Callable[[str], None] | None = None) -> tuple[Analysis, str | None]:
    """The Analysis that evaluates `sizes` and a note for the user: `analysis` itself and None when every size is
    in range; for sizes below a Dim's min, that of a capture with those Dims static there (the others symbolic)."""
    below = sizes_below(analysis.symbols, sizes)  # unknown names, 0, negatives, above a max: exit 2 here
    if not below:
        return analysis, None
    label, where = _label(below), _ranges(analysis, below)
    dims, unknowns = dim_names(subject.spec), dict(analysis.unknowns)
    for name in below:
        if name not in dims:
            what = unknowns.get(name) or ("a hyperparameter" if name in subject.hyper else
                                          "not a Dim of the model's dynamic_shapes (a derived or unnamed size)")
            raise InputError(f"{label} {where}, and {name} cannot be fixed by a concrete capture: it is {what}; give "
                             f"{name} a size in its range")
    if not dims - set(below):
        engine = "symbolic"  # no Dim left: one static capture, exact
    spec = subject.spec
    inputs = (spec.example_inputs, spec.example_kwargs, spec.dynamic_shapes)  # kept with the entry: ids stay theirs
    key = (tuple(map(id, inputs)), tuple(sorted(below.items())), analysis.mode, engine,
           tuple((str(k), id(v)) for k, v in (rules or {}).items()))
    cache = _CONCRETE.get(id(spec.model))
    if cache is None:
        cache = _CONCRETE[id(spec.model)] = {}
        weakref.finalize(spec.model, _CONCRETE.pop, id(spec.model), None)
    if key not in cache:
        try:
            other = analyze_subject(replace(subject, fixed=key[1]), rules=rules, train=analysis.mode == "train",
                                    engine=engine, on_fallback=on_fallback)
        except DepthscopeError as exc:
            if exc.exit_code != EXIT_USAGE:
                raise
            raise InputError(f"{label} {where}, and the concrete capture at {label} failed: {exc}") from exc
        symbols = dict(other.symbols, **{k: SymbolInfo(k, v, v) for k, v in below.items()})
        cache[key] = inputs, replace(other, symbols=MappingProxyType(dict(sorted(symbols.items()))),
                                     provenance=replace(other.provenance, concrete_at=below))
    other = cache[key][1]
    how = {"approximate": "approximate: see the report's reasons"}.get(other.exactness, other.exactness)
    return other, f"{label} {where}; evaluated by a concrete capture at {label} ({how})"


def _label(sizes: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items())


def _ranges(analysis: Analysis, below: dict[str, int]) -> str:
    """'is below b's export range [2, inf]', or 'are below their export ranges (b [2, inf], H [16, 4096])'."""
    spans = {k: f"[{analysis.symbols[k].min}, {analysis.symbols[k].max or 'inf'}]" for k in below}
    if len(spans) == 1:
        (name, span), = spans.items()
        return f"is below {name}'s export range {span}"
    return "are below their export ranges (" + ", ".join(f"{k} {v}" for k, v in spans.items()) + ")"


def _with_concrete(subject: Subject, analysis: Analysis, **options) -> Analysis:
    """The library's Analysis: evaluate and the views take sizes below a Dim's min through analysis_at."""
    return replace(analysis, concrete=_WeakModel(subject, analysis, options))


class _WeakModel:
    """analysis_at for the library's Analysis, holding the model weakly: an Analysis never keeps its model alive."""

    def __init__(self, subject: Subject, analysis: Analysis, options: dict):
        self.model = weakref.ref(subject.spec.model)
        self.shell = replace(subject, spec=replace(subject.spec, model=None))
        self.analysis, self.options = analysis, options

    def __call__(self, sizes: dict[str, int]) -> tuple[Analysis, str | None]:
        model = self.model()
        if model is None:
            raise InputError("the model of this Analysis has been freed; keep a reference to it to evaluate sizes "
                             "below a Dim's min (a concrete capture)")
        subject = replace(self.shell, spec=replace(self.shell.spec, model=model))
        return analysis_at(subject, self.analysis, sizes, **self.options)


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
