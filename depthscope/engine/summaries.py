"""Per-op and per-module totals of a walk's nodes: work, FLOPs, bytes and I/O, and their summaries at given sizes."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

PARTS = ("work", "flops", "bytes", "io")  # what the totals sum per op and per module


@dataclass(frozen=True, kw_only=True)
class Moved:
    """Work, depth, FLOPs, bytes and I/O of an op or module (formulas), and its arithmetic intensity at the view's
    sizes; depth is its part of the critical path there."""

    work: sympy.Expr
    depth: sympy.Expr
    flops: sympy.Expr = sympy.S.Zero
    bytes: sympy.Expr = sympy.S.Zero  # unfused bytes read and written
    io: sympy.Expr = sympy.S.Zero  # I/O against the fast memory (in FAST_MEMORY unless a size was given)
    flops_per_byte: float = 0.0  # 0 when it moves nothing
    work_per_byte: float = 0.0


@dataclass(frozen=True)
class OpSummary(Moved):
    op: str
    count: int
    status: str


@dataclass(frozen=True)
class ModuleSummary(Moved):
    path: str
    type: str


def _sums(nodes) -> tuple:
    return tuple(sympy.expand(sympy.Add(*[getattr(n.cost, p) for n in nodes])) for p in PARTS)


def op_totals(nodes) -> tuple:
    """(op, count, status, work, flops, bytes, io) per op, summed over the nodes (size-independent: computed once)."""
    by_op: dict = {}
    for node in nodes:
        entry = by_op.setdefault(node.op, [node.status, []])
        entry[1].append(node)
    return tuple((op, len(members), status, *_sums(members)) for op, (status, members) in by_op.items())


def module_totals(nodes) -> tuple:
    """(path, type, work, flops, bytes, io) per module path and each of its ancestors."""
    by_module: dict = {}
    for node in nodes:
        for prefix in module_prefixes(node.module):
            entry = by_module.setdefault(prefix, ["", []])
            entry[1].append(node)
            if prefix == node.module and not entry[0]:
                entry[0] = node.module_type
    return tuple((path, mtype, *_sums(members)) for path, (mtype, members) in by_module.items())


def module_prefixes(path: str) -> list[str]:
    """'' (the root) for nodes outside any submodule; else every ancestor path: a, a.b, a.b.c."""
    if not path:
        return [""]
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def intensities(work: float, flops: float, moved: float) -> tuple[float, float]:
    """(FLOPs per byte, work per byte): arithmetic intensity, 0 for something that moves no bytes."""
    return (flops / moved, work / moved) if moved else (0.0, 0.0)


__all__ = ["ModuleSummary", "Moved", "OpSummary", "PARTS", "intensities", "module_prefixes", "module_totals", "op_totals"]
