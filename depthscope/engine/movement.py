"""Which tensors a graph node reads, writes and aliases, told from the graph: the walk's bytes and fusion use it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from depthscope.cost.registry import OpCall, TensorMeta
from depthscope.cost.traffic import Traffic, argument_roles, call_traffic, schema_aliased


@dataclass(frozen=True)
class Movement:
    """A node's tensor inputs (each once, with the fx node it comes from), its outputs' alias flags, and the
    inputs it writes in place."""

    reads: tuple  # ((fx node, TensorMeta), ...)
    aliased: tuple  # per output tensor: True when it shares storage with an input (a view)
    mutated: tuple  # ((fx node, TensorMeta), ...): written in place (or `out=`)
    outputs: tuple = ()  # the output tensors (TensorMeta), in order


def _nodes_in(value) -> list:
    if isinstance(value, torch.fx.Node):
        return [value]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _nodes_in(v)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _nodes_in(v)]
    return []


def _fake_tensors(value) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _fake_tensors(v)]
    return []


def _storage(t: torch.Tensor):
    try:
        return t.untyped_storage()._cdata
    except Exception:  # noqa: BLE001 - a tensor without storage (a subclass): fall back to the schema
        return None


def node_movement(coster, node, call: OpCall) -> Movement:
    """Reads, alias flags and in-place writes of a call_function node; `coster` converts fx values to TensorMeta."""
    roles = dict(argument_roles(node.target))
    names = [name for name, _ in argument_roles(node.target)]
    args = [(names[i] if i < len(names) else None, a) for i, a in enumerate(node.args)] + list(node.kwargs.items())
    reads, mutated, seen, given = [], [], set(), []
    for name, value in args:
        role = roles.get(name, "read")
        for n in _nodes_in(value):
            given.append(n)
            meta = coster.node_meta(n)
            if not isinstance(meta, TensorMeta):
                continue
            if role != "read" and n not in {m for m, _ in mutated}:
                mutated.append((n, meta))
            if role != "write" and n not in seen:
                seen.add(n)
                reads.append((n, meta))
    aliased = schema_aliased(call)
    outs = _fake_tensors(node.meta.get("val"))
    if len(outs) == len(call.outputs):
        inputs = {_storage(t) for n in given for t in _fake_tensors(n.meta.get("val"))}
        inputs.discard(None)
        shared = [_storage(t) in inputs if _storage(t) is not None else None for t in outs]
        aliased = [s if s is not None else a for s, a in zip(shared, aliased)]
    return Movement(tuple(reads), tuple(aliased), tuple(mutated), tuple(call.outputs))


def node_traffic(coster, node, call: OpCall) -> tuple[Traffic, Movement]:
    """The node's bytes read and written (each input once, views free, in-place writes once)."""
    m = node_movement(coster, node, call)
    traffic = call_traffic(call, [t for _, t in m.reads], list(m.aliased), [t for _, t in m.mutated])
    return traffic, m


__all__ = ["Movement", "node_movement", "node_traffic"]
