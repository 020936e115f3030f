"""The walk: cost every node of a captured graph in topological order and keep the longest paths reaching it."""

from __future__ import annotations

import contextlib
import gc
import operator
from dataclasses import dataclass, field, replace

import sympy
import torch

from depthscope.capture.captured import Captured
from depthscope.capture.standins import standin_display
import depthscope.cost.rules  # noqa: F401 - importing the rules fills the registry
from depthscope.cost.registry import FREE_OPS, USER_RULES, OpCall, TensorMeta, as_cost, lookup, op_name, unmodeled
from depthscope.cost.tiling import call_io
from depthscope.cost.traffic import Traffic
from depthscope.cost.value import FREE, Cost
from depthscope.engine.control_flow import HOP_HANDLERS
from depthscope.engine.movement import node_traffic
from depthscope.engine.nodes import NodeCost, Outputs, body_total, module_of
from depthscope.engine.paths import ROOT, Dominance, Entry, add_forms, forms_of, merge, prune, to_expr
from depthscope.errors import DepthscopeError, InputError, RuleError

def _is_tensor(v) -> bool:
    return isinstance(v, torch.Tensor)


class GraphCoster:
    """Converts fx nodes into OpCalls over the user's symbols and applies the rules."""

    def __init__(self, captured: Captured, overrides: dict | None = None):
        self.cap = captured
        self.meta: dict = {}
        self.overrides = overrides or {}
        self.moves: dict = {}  # node -> Movement: what it reads, writes and aliases (engine/fusion.py uses it)

    def value(self, v):
        if _is_tensor(v):
            strides = v.stride() if v.layout == torch.strided else ()
            # an expanded dim (stride 0) is one element of storage: its bytes count once (cost/traffic.py)
            expanded = tuple(i for i, st in enumerate(strides) if isinstance(st, int) and st == 0)
            return TensorMeta(tuple(self.cap.expr(s) for s in v.shape), v.dtype, expanded)
        if isinstance(v, (torch.SymInt, int)) and not isinstance(v, bool):
            return self.cap.expr(v)
        if isinstance(v, (list, tuple)):
            return type(v)(self.value(x) for x in v) if not hasattr(v, "_fields") else tuple(self.value(x) for x in v)
        return v

    def node_meta(self, node):
        hit = self.meta.get(node)
        if hit is None and node not in self.meta:
            hit = self.value(node.meta.get("val"))
            self.meta[node] = hit
        return hit

    def arg(self, a):
        if isinstance(a, torch.fx.Node):
            return self.node_meta(a)
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(x) for x in a)
        if isinstance(a, dict):
            return {k: self.arg(v) for k, v in a.items()}
        return a

    def call(self, node) -> OpCall:
        out = self.node_meta(node)
        outputs = tuple(_flatten_tensors(out))
        return OpCall(node.target, tuple(self.arg(a) for a in node.args), {k: self.arg(v) for k, v in node.kwargs.items()}, outputs)

    def cost(self, node) -> tuple[Cost, str, Traffic]:
        """The node's cost by its rule, with the bytes it moves and its I/O filled in unless the rule set them."""
        cost, status, call = self.rule_cost(node)
        if call is None:
            return cost, status, Traffic()
        traffic, self.moves[node] = node_traffic(self, node, call)
        if cost.bytes == 0:
            cost = replace(cost, bytes=traffic.total, io=None)
        else:  # the rule's own bytes: what it reads is what it does not write
            traffic = Traffic(cost.bytes - traffic.written, traffic.written)
        if cost.io == cost.bytes:
            cost = replace(cost, io=call_io(call, cost))
        return cost, status, traffic

    def rule_cost(self, node) -> tuple[Cost, str, OpCall | None]:
        from depthscope.cost.registry import InvalidCost, canonical_call

        target = node.target
        rule = lookup(target, self.overrides)
        val = node.meta.get("val")
        if rule is None:
            if not _contains_tensor(val):
                # shape arithmetic on SymInts (operator.mul, sym_size, ...), assertions: no tensor work
                return FREE, "free", None
            call = self.call(node)
            return unmodeled(call), "unmodeled", call
        # a per-call override (also one keyed by the functional overload of an in-place op) or @depthscope.rule
        user = rule in USER_RULES or rule is not lookup(target)
        who = "custom rule" if user else "built-in rule"
        error = InputError if user else RuleError
        where = f"{who} {getattr(rule, '__name__', rule)} for {op_name(target)} (node {node.name})"
        given = self.call(node)
        call = canonical_call(given)
        # after the call: converting its shapes names data-dependent sizes (u0) as symbols of the graph
        sizes = {info.symbol: (info.min, info.max) for info in self.cap.symbols.values()}
        try:
            result = rule(call)
        except DepthscopeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise error(f"{where} raised {type(exc).__name__}: {exc}") from exc
        try:
            cost = as_cost(result, sizes, call)
        except InvalidCost as exc:
            raise error(f"{where} returned an invalid cost: {exc}") from None
        return cost, ("free" if target in FREE_OPS or cost.is_zero else "modeled"), given


def _flatten_tensors(v):
    if isinstance(v, TensorMeta):
        yield v
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from _flatten_tensors(x)


def _contains_tensor(v) -> bool:
    if _is_tensor(v):
        return True
    if isinstance(v, (list, tuple)):
        return any(_contains_tensor(x) for x in v)
    return False


class Walker:
    """Walks a graph (and its subgraphs) in topological order, costing nodes and tracking longest paths."""

    def __init__(self, captured: Captured, rules: dict | None):
        self.captured = captured
        self.gm = captured.graph_module
        self.coster = GraphCoster(captured, rules)
        self.dom = Dominance(captured.symbols)
        self.records: list[NodeCost] = []
        self.record_of: dict = {}
        self.unknowns: list[tuple[str, str]] = []

    def inputs_frontier(self, node, frontier) -> list:
        """The longest paths reaching any input of node: the inputs' frontiers (each pruned) merged."""
        groups = []
        for i in node.all_input_nodes:
            f = frontier.get(i, [ROOT])
            if isinstance(f, Outputs):
                groups.extend(f)
            else:
                groups.append(f)
        return merge(groups, self.dom) or [ROOT]

    def walk(self, gm, args_frontiers: list | None = None, prefix: str = "", records: list | None = None) -> list:
        """Cost gm's nodes into `records` (default: the report's) and return one frontier per graph output."""
        records = self.records if records is None else records
        frontier: dict = {}
        placeholders = 0
        outputs: list = [[ROOT]]
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                given = args_frontiers[placeholders] if args_frontiers and placeholders < len(args_frontiers) else [ROOT]
                frontier[node] = given
                placeholders += 1
            elif node.op == "get_attr":
                frontier[node] = [ROOT]
            elif node.op == "output":
                outs = node.args[0] if isinstance(node.args[0], (list, tuple)) else [node.args[0]]
                outputs = [self.frontier_of(o, frontier) for o in outs]
            elif node.op == "call_function":
                frontier[node] = self.visit(node, frontier, gm, prefix, records)
            else:
                raise InputError(f"unsupported graph node {node.op} {node.target} in the exported program")
        return outputs

    def frontier_of(self, value, frontier) -> list:
        if isinstance(value, torch.fx.Node):
            f = frontier.get(value, [ROOT])
            return (merge(list(f), self.dom) or [ROOT]) if isinstance(f, Outputs) else f
        if isinstance(value, (list, tuple)):
            return merge([self.frontier_of(v, frontier) for v in value], self.dom) or [ROOT]
        return [ROOT]

    def visit(self, node, frontier, gm, prefix, records):
        target = node.target
        if target is operator.getitem and isinstance(frontier.get(node.args[0]), Outputs):
            parts = frontier[node.args[0]]
            index = node.args[1]
            return parts[index] if isinstance(index, int) and -len(parts) <= index < len(parts) else self.inputs_frontier(node, frontier)
        if isinstance(target, torch._ops.HigherOrderOperator):
            handler = HOP_HANDLERS.get(target.name())
            if handler is not None:
                result = handler(self, node, frontier, gm, prefix, records)
                if result is not None:
                    return result
        cost, status, traffic = self.coster.cost(node)
        return self.place(node, cost, status, self.inputs_frontier(node, frontier), prefix, records, traffic=traffic)

    def place(self, node, cost: Cost, status: str, merged: list, prefix: str, records: list, op: str | None = None,
              traffic: Traffic | None = None):
        """Record a node's cost and extend the longest paths reaching it by its own depth."""
        module, mtype = module_of(node)
        shown = standin_display(node.target, node.args)
        if shown is not None:
            op, mtype = shown[0], shown[1] or mtype
        traffic = traffic or Traffic(cost.bytes)
        rec = NodeCost(prefix + node.name, op or op_name(node.target), module, mtype, cost, status, traffic.read,
                       traffic.written)
        records.append(rec)
        self.record_of[node] = rec
        if cost.depth == 0:
            return merged
        own_forms = forms_of(cost.depth)
        if len(own_forms) == 1:
            # adding one step to every path keeps which paths dominate which: no comparison needed
            own = own_forms[0]
            return [Entry(add_forms(e.form, own), node, own, e) for e in merged]
        own_forms = [e.form for e in prune([Entry(f) for f in own_forms], self.dom)]
        return merge([[Entry(add_forms(e.form, own), node, own, e) for e in merged] for own in own_forms], self.dom)

    # -- subgraphs -----------------------------------------------------------------------------

    def subgraph(self, gm, arg) -> torch.fx.GraphModule | None:
        if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
            sub = getattr(gm, arg.target, None)
            if isinstance(sub, torch.fx.GraphModule):
                return sub
        return None

    def body_cost(self, sub, prefix: str) -> tuple[Cost, list]:
        """Work, FLOPs, bytes, I/O and depth forms of one run of a subgraph, on its own (inputs ready at time 0)."""
        scratch: list = []
        outs = self.walk(sub, None, prefix, scratch)
        final = merge(outs, self.dom) or [ROOT]
        return body_total(scratch), [e.form for e in final]

    def repeated(self, node, frontier, prefix, records, body: Cost, forms: list, times, depth_times, op: str):
        """A node that runs a body `times` times in work (and bytes) and `depth_times` times in sequence."""
        depth = sympy.Max(*[sympy.expand(depth_times * to_expr(f)) for f in forms]) if forms else sympy.S.Zero
        cost = Cost(sympy.expand(body.work * times), depth, sympy.expand(body.flops * times),
                    sympy.expand(body.bytes * times), sympy.expand(body.io * times))
        merged = self.inputs_frontier(node, frontier)
        return self.place(node, cost, "modeled", merged, prefix, records, op=op)




@dataclass
class Walked:
    """What a walk found: every node's cost, the longest-path entries that no other dominates, and unknowns."""

    captured: Captured
    records: list
    record_of: dict
    final: list
    dominance: Dominance
    unknowns: list = field(default_factory=list)
    moves: dict = field(default_factory=dict)  # node -> Movement, for the fused-bytes estimate


def walk_captured(captured: Captured, rules: dict | None = None) -> Walked:
    """Cost every node and keep the non-dominated longest paths to the outputs."""
    with gc_paused():
        walker = Walker(captured, rules)
        outputs = walker.walk(walker.gm)
        final = merge(outputs, walker.dom) or [ROOT]
        return Walked(captured, walker.records, walker.record_of, final, walker.dom, list(walker.unknowns),
                      walker.coster.moves)


@contextlib.contextmanager
def gc_paused():
    """The walk allocates many small acyclic objects; Python's cyclic GC rescanning export's large heap on every
    generation-2 pass made analysis time superlinear in graph size (48 GPT-2 layers: 0.52 s with, 0.26 s without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
