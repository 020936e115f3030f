"""Bytes a call moves: each tensor it reads and each it writes, once, from symbolic shapes and dtypes.

Conventions (docs/cost-model.md, "Bytes"): a tensor's bytes are its elements times its dtype's size, counting an
expanded (stride-0) dim once; an output that aliases an input (a view) moves nothing; an in-place op reads its
inputs and writes the mutated tensor once; `out=` tensors are written, not read; `empty*` writes nothing;
gathers read the indices and the elements they gather, not the whole source.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import sympy
import torch

from depthscope.cost.registry import FREE_OPS, OpCall, TensorMeta
from depthscope.cost.variants import functional_of
from depthscope.symbols import ZERO, numel

FAST_MEMORY = sympy.Symbol("M", integer=True, positive=True)  # bytes of fast memory (cache, SRAM) in `io`
DEFAULT_ITEMSIZE = 4  # a tensor without a dtype (a hand-built TensorMeta): float32, torch's default


@dataclass(frozen=True)
class Traffic:
    """Bytes read and bytes written by one call."""

    read: sympy.Expr = ZERO
    written: sympy.Expr = ZERO

    @property
    def total(self) -> sympy.Expr:
        return self.read + self.written


def itemsize(dtype) -> int:
    """Bytes per element of a torch dtype (float32 4, bfloat16 2, int64 8, bool 1, complex64 8)."""
    return dtype.itemsize if isinstance(dtype, torch.dtype) else DEFAULT_ITEMSIZE


def footprint(t: TensorMeta) -> sympy.Expr:
    """Elements of storage a tensor spans: its numel, with each expanded (stride-0) dim counted once."""
    if not t.broadcast:
        return t.numel
    return numel([s for i, s in enumerate(t.shape) if i not in t.broadcast])


def nbytes(t: TensorMeta) -> sympy.Expr:
    return footprint(t) * itemsize(t.dtype)


def total_bytes(tensors) -> sympy.Expr:
    return sympy.Add(*[nbytes(t) for t in tensors])


# -- what an op's schema says ---------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def argument_roles(op) -> tuple[tuple[str, str], ...]:
    """(name, role) per schema argument: "write" for `out=` tensors (written only), "mutate" for tensors an
    in-place op reads and writes (`Tensor(a!) self`), "read" otherwise."""
    schema = getattr(op, "_schema", None)
    if schema is None:
        return ()
    out = []
    for a in schema.arguments:
        writes = a.alias_info is not None and a.alias_info.is_write
        out.append((a.name, ("write" if a.kwarg_only else "mutate") if writes else "read"))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def aliasing_returns(op) -> tuple[bool, ...]:
    """Per schema return: True when it may alias an argument (`Tensor(a)`, `Tensor(a!)`, `Tensor(a)[]`)."""
    schema = getattr(op, "_schema", None)
    return tuple(r.alias_info is not None for r in schema.returns) if schema is not None else ()


@functools.lru_cache(maxsize=None)
def writes_nothing(op) -> bool:
    """`empty`, `empty_like`, `new_empty`, `empty_strided`, ...: uninitialised memory, no write."""
    name = getattr(getattr(op, "_schema", None), "name", "")
    base = name.split("::")[-1]
    return base.startswith(("empty", "new_empty"))


def schema_aliased(call: OpCall) -> list[bool]:
    """Which outputs the schema says alias an argument (a list of aliases counts for every tensor in it)."""
    flags = aliasing_returns(call.op)
    if not flags:
        return [False] * len(call.outputs)
    if len(flags) == 1:
        return [flags[0]] * len(call.outputs)
    return [flags[i] if i < len(flags) else False for i in range(len(call.outputs))]


def arguments_by_role(call: OpCall) -> dict[str, list]:
    """The call's tensor arguments grouped by role ("read", "mutate", "write"); lists are flattened."""
    roles = dict(argument_roles(call.op))
    names = [name for name, _ in argument_roles(call.op)]
    grouped: dict[str, list] = {"read": [], "mutate": [], "write": []}
    items = [(names[i] if i < len(names) else None, a) for i, a in enumerate(call.args)] + list(call.kwargs.items())
    for name, value in items:
        role = roles.get(name, "read")
        values = value if isinstance(value, (list, tuple)) else (value,)
        grouped[role].extend(v for v in values if isinstance(v, TensorMeta))
    return grouped


# -- the bytes of a call ----------------------------------------------------------------------------


BytesRule = Callable[[OpCall, Traffic], Traffic]
BYTES_RULES: dict = {}  # ops whose traffic differs from "read every input, write every output"


def call_traffic(call: OpCall, reads: list | None = None, aliased: list | None = None,
                 mutated: list | None = None) -> Traffic:
    """Bytes a call reads and writes. `reads` (each input tensor once), `aliased` (per output: a view of an input)
    and `mutated` (tensors written in place) default to what the op's schema says; the walk passes them from
    the graph, where the same tensor given twice is read once and a view is told by its storage."""
    op = call.op
    if not call.outputs and (op in FREE_OPS or functional_of(op) in FREE_OPS) and not mutated:
        return Traffic()  # metadata: sizes, strides, assertions
    grouped = arguments_by_role(call)
    reads = grouped["read"] + grouped["mutate"] if reads is None else reads
    mutated = grouped["mutate"] + grouped["write"] if mutated is None else mutated
    aliased = schema_aliased(call) if aliased is None else aliased
    if call.outputs and all(aliased) and not mutated:
        return Traffic()  # a view: no data moves
    fresh = [t for t, alias in zip(call.outputs, aliased) if not alias]
    written = ZERO if writes_nothing(op) else total_bytes(fresh) + total_bytes(mutated)
    traffic = Traffic(total_bytes(reads), written)
    rule = BYTES_RULES.get(op) or BYTES_RULES.get(functional_of(op))
    return rule(call, traffic) if rule is not None else traffic


def registrar(table: dict, *ops) -> Callable:
    """A decorator putting its function in `table` under every overload of the given op packets."""

    def decorator(fn):
        for op in ops:
            for name in op.overloads():
                table[getattr(op, name)] = fn
        return fn

    return decorator


def bytes_rule(*ops) -> Callable[[BytesRule], BytesRule]:
    """Register a traffic rule (OpCall, generic Traffic) -> Traffic for every overload of the given ops."""
    return registrar(BYTES_RULES, *ops)


aten = torch.ops.aten
GATHER_SOURCE = {"embedding": "weight", "gather": "self", "index": "self", "index_select": "self", "take": "self",
                 "take_along_dim": "self", "_unsafe_index": "self"}


@bytes_rule(aten.embedding, aten.gather, aten.index, aten.index_select, aten.take, aten.take_along_dim,
            aten._unsafe_index)
def gathered(call: OpCall, traffic: Traffic) -> Traffic:
    """A gather reads the indices and the elements it gathers (numel(out) of them), not its whole source."""
    name = str(call.op).split(".")[1]
    source = call.arg(GATHER_SOURCE[name])
    if not isinstance(source, TensorMeta):
        return traffic
    return Traffic(traffic.read - nbytes(source) + call.out.numel * itemsize(source.dtype), traffic.written)


# The first tensor is not read: `zeros_like(x)`, `x.new_full(...)`, functional `fill(x, v)` take only its shape and
# dtype (`empty*`: nothing is written either); `fill_`, `zero_`, `copy_(x, src)` replace it whole (copy_ reads src).
FIRST_NOT_READ = (aten.empty_like, aten.zeros_like, aten.ones_like, aten.full_like, aten.rand_like, aten.randn_like,
                  aten.randint_like, aten.new_empty, aten.new_empty_strided, aten.new_zeros, aten.new_ones,
                  aten.new_full, aten.fill, aten.zero, aten.fill_, aten.zero_, aten.copy_, aten.copy)


@bytes_rule(*FIRST_NOT_READ)
def first_not_read(call: OpCall, traffic: Traffic) -> Traffic:
    """Templates and overwrites: the output (or the first tensor, in place) is written, the first tensor not read."""
    first = call.args[0] if call.args else None
    if not isinstance(first, TensorMeta):
        return traffic
    return Traffic(traffic.read - nbytes(first), traffic.written)


@bytes_rule(aten.dropout, aten.feature_dropout, aten.alpha_dropout, aten.feature_alpha_dropout)
def dropout(call: OpCall, traffic: Traffic) -> Traffic:
    """Dropout outside training returns its input: nothing moves (eager runs no kernel)."""
    return traffic if call.arg("train", True) else Traffic()


@bytes_rule(aten.nonzero, aten.argwhere, aten.masked_select, aten._unique, aten._unique2, aten.unique_dim,
            aten.unique_consecutive, aten.unique_dim_consecutive)
def compacted(call: OpCall, traffic: Traffic) -> Traffic:
    """A compaction's output has a data-dependent size (u0): it is written at its largest, every element kept,
    as the work rules cost these ops from the input (a size no input has becomes the input's numel)."""
    source = next(iter(call.tensors()), None)
    if source is None:
        return traffic
    known = set().union(*[sympy.sympify(d).free_symbols for t in call.tensors() for d in t.shape])
    stray = {s for t in call.outputs for d in t.shape for s in sympy.sympify(d).free_symbols} - known
    bound = {s: footprint(source) for s in stray}
    return Traffic(traffic.read, sympy.expand(traffic.written.xreplace(bound)))


@bytes_rule(aten._scaled_dot_product_attention_math)
def materialised_attention(call: OpCall, traffic: Traffic) -> Traffic:
    """The math path writes the scores S and reads them back, then reads P (written as its second output):
    standard attention, Dao et al. 2022, Algorithm 0."""
    scores = call.outputs[1] if len(call.outputs) > 1 else None
    if scores is None:
        return traffic
    return Traffic(traffic.read + 2 * nbytes(scores), traffic.written + nbytes(scores))


__all__ = ["BYTES_RULES", "DEFAULT_ITEMSIZE", "FAST_MEMORY", "Traffic", "argument_roles", "bytes_rule",
           "call_traffic", "footprint", "itemsize", "nbytes", "registrar", "total_bytes", "writes_nothing"]
