"""The op-rule registry: one source of truth mapping ATen overloads to pure cost functions of shapes."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import sympy
import torch

from depthscope.cost.validate import InvalidCost, check_cost
from depthscope.cost.value import FREE, Cost
from depthscope.cost.variants import functional_of, out_argument_names, variant_kind
from depthscope.symbols import ONE, numel


@dataclass(frozen=True)
class TensorMeta:
    """A tensor as a rule sees it: a symbolic shape (sympy), a dtype, and the dims it is expanded along (stride 0)."""

    shape: tuple
    dtype: Any = None
    broadcast: tuple = ()  # dims of stride 0 (an `expand`): one element of storage stands for all of them

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
# Readable work and depth formulas per rule, for `depthscope rules` (K = contracted size, k = reduced size, ...).
DESCRIPTIONS: dict[Rule, tuple[str, str]] = {}


def resolve_op(op) -> list:
    """The overloads an op reference stands for: an OpOverload, a packet (all overloads), a custom_op
    definition, or a name such as "aten::mm", "aten.mm.default" or "mylib::foo"."""
    if isinstance(op, str):
        return _resolve_name(op)
    inner = getattr(op, "_opoverload", None)  # torch.library.custom_op's CustomOpDef
    if inner is not None:
        return [inner]
    if isinstance(op, torch._ops.OpOverloadPacket):
        return [getattr(op, name) for name in op.overloads()]
    return [op]


def _resolve_name(name: str) -> list:
    text = name.strip().replace("::", ".")
    parts = text.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise ValueError(f"not an op name: {name!r} (expected e.g. 'aten::mm' or 'mylib.foo.default')")
    namespace = getattr(torch.ops, parts[0])
    packet = getattr(namespace, parts[1], None)
    if packet is None:
        raise ValueError(f"no such op: {name!r}")
    if len(parts) == 2:
        return resolve_op(packet)
    overload = getattr(packet, parts[2], None)
    if overload is None:
        raise ValueError(f"no such overload: {name!r}")
    return [overload]


def _registrable(op) -> list:
    """The overloads a rule is registered for: in-place and `out=` overloads are left out (they take their
    functional overload's rule, see cost/variants.py); naming only such overloads is an error."""
    resolved = resolve_op(op)
    kept = [o for o in resolved if functional_of(o) is None]
    if resolved and not kept:
        variant = resolved[0]
        raise ValueError(f"{variant} is the {variant_kind(variant)} variant of {functional_of(variant)} and takes "
                         f"its rule: register the rule for {functional_of(variant)}")
    return kept


def register(*ops, work: str | None = None, depth: str | None = None) -> Callable[[Rule], Rule]:
    """Register a rule for ops (overloads, packets, custom ops or names); registering an op twice is an error.

    `work` and `depth` describe the rule's formulas in words for `depthscope rules`. A packet's in-place and
    `out=` overloads are not registered: they resolve to the functional overload's rule (`lookup`).
    """

    def decorator(fn: Rule) -> Rule:
        overloads = [o for op in ops for o in _registrable(op)]
        for overload in overloads:
            if overload in RULES and RULES[overload] is not fn:
                raise ValueError(f"duplicate cost rule for {overload}: {RULES[overload].__name__} and {fn.__name__}")
        for overload in overloads:
            RULES[overload] = fn
        if work is not None or depth is not None:
            DESCRIPTIONS[fn] = (work or "?", depth or "?")
        return fn

    return decorator


USER_RULES: set = set()


def rule(*ops, work: str | None = None, depth: str | None = None) -> Callable[[Rule], Rule]:
    """Register a user's cost rule for ops (ATen, custom_op definitions, or names like "mylib::op").

    The rule takes an OpCall and returns a Cost (or a (work, depth) pair). Registering an op that already has
    a rule is an error; to replace a rule for one analysis, pass `rules={op: fn}` to `depthscope.analyze`.
    """

    def decorator(fn: Rule) -> Rule:
        register(*ops, work=work or f"custom: {fn.__name__}", depth=depth or f"custom: {fn.__name__}")(fn)
        USER_RULES.add(fn)
        return fn

    return decorator


def as_cost(value, symbols: dict | None = None, call: OpCall | None = None) -> Cost:
    """A rule's result as a valid Cost: a Cost, or a (work, depth) or (work, depth, flops) tuple, whose parts are
    exact, finite and non-negative expressions over size symbols (cost/validate.py); `symbols` maps the sizes
    the graph has to their (min, max) ranges, `call` is what the rule was given. Anything else raises
    InvalidCost saying why."""
    if isinstance(value, Cost):
        cost = value
    elif isinstance(value, tuple) and len(value) in (2, 3):
        try:
            cost = Cost(*value)
        except TypeError as exc:
            raise InvalidCost(str(exc)) from None
    else:
        raise InvalidCost(f"a cost rule must return a Cost or a (work, depth) tuple, got {type(value).__name__}")
    check_cost(cost, symbols, (lambda: call_sizes(call)) if call is not None else ())
    return cost


def call_sizes(call: OpCall) -> list:
    """Every size of every tensor a call takes or returns."""
    return [s for t in call.tensors() + list(call.outputs) for s in t.shape]


def describe(rule: Rule) -> tuple[str, str]:
    """(work, depth) in words for a rule; a rule without a description shows its docstring's first line."""
    hit = DESCRIPTIONS.get(rule)
    if hit is not None:
        return hit
    doc = (rule.__doc__ or rule.__name__).strip().splitlines()[0]
    return doc, doc


def register_free(*ops) -> None:
    """Register views and metadata ops: they move no data and cost nothing."""
    register(*ops, work="0", depth="0")(free)
    for op in ops:
        FREE_OPS.update(_registrable(op))


def free(call: OpCall) -> Cost:
    """Views, metadata and shape arithmetic: no work, no depth."""
    return FREE


def unmodeled(call: OpCall) -> Cost:
    """The default for an op without a rule: one operation per output element, depth 1 (reported, never silent)."""
    return Cost(sum((t.numel for t in call.outputs), sympy.S.Zero) or ONE, ONE)


def _is_pointwise(op) -> bool:
    return torch.Tag.pointwise in getattr(op, "tags", ())


_POINTWISE: list = []  # the rule for ops torch tags pointwise and no rule names (set by rules/elementwise.py)


def set_pointwise_rule(rule: Rule) -> Rule:
    """Make `rule` the cost of every op torch tags pointwise that has no rule of its own."""
    _POINTWISE[:] = [rule]
    return rule


def lookup(op, overrides: dict | None = None) -> Rule | None:
    """The rule for an op: a per-call override, its registered rule, for an in-place or `out=` overload its
    functional overload's rule, else the pointwise rule for ops torch tags pointwise. Call the rule with
    `canonical_call(call)`."""
    if overrides:
        rule = overrides.get(op)
        if rule is not None:
            return rule
    rule = RULES.get(op)
    if rule is not None:
        return rule
    functional = functional_of(op)
    if functional is not None:
        return lookup(functional, overrides)
    if _POINTWISE and _is_pointwise(op):
        return _POINTWISE[0]
    return None


def canonical_call(call: OpCall) -> OpCall:
    """The call as its rule sees it: an in-place or `out=` overload becomes its functional overload (the same
    arguments, without the `out=` tensors, which are results and not inputs)."""
    functional = functional_of(call.op)
    if functional is None:
        return call
    drop = out_argument_names(call.op)
    kwargs = {k: v for k, v in call.kwargs.items() if k not in drop}
    return OpCall(functional, call.args, kwargs, call.outputs)


def op_name(target) -> str:
    """aten.mm.default, higher_order.cond, operator.getitem: the name reports use for an op."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    if isinstance(target, torch._ops.HigherOrderOperator):
        return f"higher_order.{target.name()}"
    name = getattr(target, "__name__", repr(target))
    module = getattr(target, "__module__", None) or ""
    if module == "_operator" or (not module and vars(operator).get(name) is target):
        module = "operator"
    return f"{module}.{name}" if module else name


def aten_overloads(tag=None) -> list:
    """Every ATen overload torch registers (optionally only those with `tag`), in name order."""
    found = []
    for name in sorted(torch._C._dispatch_get_all_op_names()):
        if not name.startswith("aten::"):
            continue
        base, _, overload = name[len("aten::"):].partition(".")
        packet = getattr(torch.ops.aten, base, None)
        op = getattr(packet, overload or "default", None) if packet is not None else None
        if op is None or not isinstance(op, torch._ops.OpOverload):
            continue
        if tag is None or tag in op.tags:
            found.append(op)
    return found


def modeled_ops() -> list[tuple[Any, Rule]]:
    """Every op with a rule: the registered ones, the ATen ops torch tags pointwise, and the in-place and
    `out=` overloads of both, by name."""
    table = dict(RULES)
    for op in aten_overloads():
        if op not in table and (functional_of(op) is not None or _is_pointwise(op)):
            rule = lookup(op)
            if rule is not None:
                table[op] = rule
    return sorted(table.items(), key=lambda item: op_name(item[0]))
