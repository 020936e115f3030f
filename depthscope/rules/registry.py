"""The op-rule registry: one source of truth mapping ATen overloads to pure cost functions of shapes."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import sympy
import torch

from ..cost import FREE, Cost
from ..symbols import ONE, numel


@dataclass(frozen=True)
class TensorMeta:
    """A tensor as a rule sees it: a symbolic shape (sympy) and a dtype."""

    shape: tuple
    dtype: Any = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> sympy.Expr:
        return numel(self.shape)

    def size(self, dim: int) -> sympy.Expr:
        return self.shape[dim] if self.shape else ONE


@dataclass(frozen=True)
class OpCall:
    """One call of an op: arguments (tensors as TensorMeta, sizes as sympy) and output tensors."""

    op: Any
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    outputs: tuple = ()

    @property
    def out(self) -> TensorMeta:
        """The first tensor output."""
        return self.outputs[0] if self.outputs else TensorMeta(())

    def arg(self, name: str, default=None):
        """An argument by schema name, positional or keyword, or its schema default."""
        names = _schema_names(self.op)
        if name in self.kwargs:
            return self.kwargs[name]
        if name in names:
            i = names.index(name)
            if i < len(self.args):
                return self.args[i]
            schema_default = _schema_defaults(self.op).get(name, _MISSING)
            if schema_default is not _MISSING and default is None:
                return schema_default
        return default

    def tensors(self) -> list[TensorMeta]:
        """Every tensor argument, in order (lists flattened)."""
        found = []
        for a in list(self.args) + list(self.kwargs.values()):
            if isinstance(a, TensorMeta):
                found.append(a)
            elif isinstance(a, (list, tuple)):
                found.extend(x for x in a if isinstance(x, TensorMeta))
        return found


_MISSING = object()


@functools.lru_cache(maxsize=None)
def _schema_names(op) -> list[str]:
    schema = getattr(op, "_schema", None)
    return [a.name for a in schema.arguments] if schema is not None else []


@functools.lru_cache(maxsize=None)
def _schema_defaults(op) -> dict:
    schema = getattr(op, "_schema", None)
    if schema is None:
        return {}
    return {a.name: a.default_value for a in schema.arguments if a.has_default_value()}


Rule = Callable[[OpCall], Cost]

RULES: dict[Any, Rule] = {}
FREE_OPS: set = set()


def _overloads(op) -> list:
    """An OpOverloadPacket stands for all its overloads; anything else for itself."""
    if isinstance(op, torch._ops.OpOverloadPacket):
        return [getattr(op, name) for name in op.overloads()]
    return [op]


def register(*ops) -> Callable[[Rule], Rule]:
    """Register a rule for ops (overloads or packets); registering an op twice is an error."""

    def decorator(fn: Rule) -> Rule:
        for op in ops:
            for overload in _overloads(op):
                if overload in RULES:
                    raise ValueError(f"duplicate cost rule for {overload}: {RULES[overload].__name__} and {fn.__name__}")
                RULES[overload] = fn
        return fn

    return decorator


def register_free(*ops) -> None:
    """Register views and metadata ops: they move no data and cost nothing."""
    register(*ops)(free)
    for op in ops:
        FREE_OPS.update(_overloads(op))


def free(call: OpCall) -> Cost:
    """Views, metadata and shape arithmetic: no work, no depth."""
    return FREE


def unmodeled(call: OpCall) -> Cost:
    """The default for an op without a rule: one operation per output element, depth 1 (reported, never silent)."""
    return Cost(sum((t.numel for t in call.outputs), sympy.S.Zero) or ONE, ONE)


def _is_pointwise(op) -> bool:
    return torch.Tag.pointwise in getattr(op, "tags", ())


def lookup(op) -> Rule | None:
    """The rule for an op: its registered rule, else the elementwise rule for ops torch tags pointwise."""
    rule = RULES.get(op)
    if rule is not None:
        return rule
    if _is_pointwise(op):
        from .elementwise import elementwise

        return elementwise
    return None
