"""What the walk records per node: its cost and where it sits in the user's modules."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from depthscope.cost.value import Cost
from depthscope.symbols import ZERO


@dataclass(frozen=True)
class NodeCost:
    """The cost of one graph node and where it sits."""

    name: str
    op: str
    module: str
    module_type: str
    cost: Cost
    status: str  # "modeled", "free" or "unmodeled"
    bytes_read: sympy.Expr = ZERO  # cost.bytes = bytes_read + bytes_written
    bytes_written: sympy.Expr = ZERO


def body_total(records) -> Cost:
    """Work, FLOPs, bytes and I/O of a subgraph's records (depth 0: the caller takes it from the paths)."""
    return Cost(sympy.Add(*[r.cost.work for r in records]), 0, sympy.Add(*[r.cost.flops for r in records]),
                sympy.Add(*[r.cost.bytes for r in records]), sympy.Add(*[r.cost.io for r in records]))


def module_of(node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    for path, mtype in reversed(list(stack.values())):
        if path.startswith("_empty_nn_module_stack"):
            continue
        tname = mtype if isinstance(mtype, str) else getattr(mtype, "__qualname__", str(mtype))
        return _clean_path(path), tname.rsplit(".", 1)[-1]
    return "", ""


def _clean_path(path: str) -> str:
    """Strict export writes L['self'].layers[0].attn; report it as layers.0.attn."""
    path = path.replace("L['self'].", "").replace("L['self']", "")
    for ch in "[]":
        path = path.replace(ch, "." if ch == "[" else "")
    return path.strip(".").replace("..", ".")


class Outputs(tuple):
    """Per-output frontiers of a node whose outputs come from a subgraph (selected by getitem)."""
