"""The engine: cost every node of an exported graph, sum work, find the critical path, build the Report."""

from __future__ import annotations

import contextlib
import gc
import operator
from collections import defaultdict
from dataclasses import dataclass, field

import sympy
import torch

from depthscope.cost import rules as _rules  # noqa: F401 - fills the registry
from depthscope.capture.captured import Captured
from depthscope.cost.value import FREE, Cost
from depthscope.engine.paths import ROOT, Dominance, Entry, add_forms, forms_of, prune, to_expr
from depthscope.errors import DepthscopeError, InputError, RuleError
from depthscope.cost.registry import FREE_OPS, USER_RULES, OpCall, TensorMeta, as_cost, lookup, op_name, unmodeled
from depthscope.capture.standins import standin_display
from depthscope.symbols import SymbolInfo, big_o, clog2, evaluate, size_symbol

SCHEMA = "depthscope.report/1"
REFERENCE_SIZE = 2**16  # sizes used to pick the critical path among incomparable ones (capped by Dim max)


@dataclass
class NodeCost:
    """The cost of one graph node and where it sits."""

    name: str
    op: str
    module: str
    module_type: str
    cost: Cost
    status: str  # "modeled", "free" or "unmodeled"


@dataclass
class OpSummary:
    op: str
    count: int
    work: sympy.Expr
    depth: sympy.Expr  # this op's share of the critical path
    status: str


@dataclass
class ModuleSummary:
    path: str
    type: str
    work: sympy.Expr
    depth: sympy.Expr  # this module's share of the critical path


@dataclass
class PathStep:
    node: str
    op: str
    module: str
    depth: sympy.Expr


@dataclass
class Report:
    """Symbolic work and depth of a model, with breakdowns; expressions are sympy over the user's size symbols."""

    model: str
    symbols: dict[str, SymbolInfo]
    work: sympy.Expr
    depth: sympy.Expr
    flops: sympy.Expr
    ops: list[OpSummary]
    modules: list[ModuleSummary]
    critical_path: list[PathStep]
    unmodeled: list[tuple[str, int]]
    node_count: int
    engine: str = "symbolic"
    nodes: list[NodeCost] = field(default_factory=list, repr=False)
    unknowns: list[tuple[str, str]] = field(default_factory=list)  # (symbol, what it stands for)
    mode: str = "inference"  # or "train": forward and backward
    fit: object = None  # the fitted engine's FitInfo
    breakdown_at: dict | None = None  # fitted engine: the sizes at which ops, modules and the path were taken

    @property
    def parallelism(self) -> sympy.Expr:
        """W / D: how many processors the model can keep busy (0 for a model that computes nothing)."""
        return self.work / self.depth if self.depth != 0 else sympy.S.Zero

    @property
    def big_o(self) -> dict[str, sympy.Expr]:
        work, depth = big_o(self.work), big_o(self.depth)
        return {"work": work, "depth": depth, "parallelism": work / depth}

    def symbol_values(self, sizes: dict[str, int]) -> dict[sympy.Symbol, int]:
        """Check sizes against the symbols and their ranges; every symbol needs a value."""
        values = {}
        for name, value in sizes.items():
            info = self.symbols.get(name)
            if info is None:
                known = ", ".join(self.symbols) or "none (the model has no dynamic dims)"
                raise InputError(f"unknown size symbol {name!r}; the model's symbols are: {known}")
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"size {name} must be an integer, got {value!r}")
            if value < info.min or (info.max is not None and value > info.max):
                hi = info.max if info.max is not None else "inf"
                raise InputError(f"{name}={value} is outside {name}'s range [{info.min}, {hi}] that export proved the formulas for")
            values[info.symbol] = value
        missing = [n for n in self.symbols if n not in sizes]
        if missing:
            raise InputError(f"no value for {', '.join(missing)}; give every symbol a size (e.g. --at {missing[0]}=1024)")
        return values

    def evaluate(self, **sizes: int) -> dict[str, float | int]:
        """Work, depth, FLOPs and parallelism at concrete sizes (exact integers for work, depth, FLOPs)."""
        values = self.symbol_values(sizes)
        work = _as_number(evaluate(self.work, values))
        depth = _as_number(evaluate(self.depth, values))
        flops = _as_number(evaluate(self.flops, values))
        return {"work": work, "depth": depth, "flops": flops, "parallelism": work / depth if depth else 0.0}

    def to_dict(self, at: dict[str, int] | None = None) -> dict:
        from depthscope.report.json import report_dict

        return report_dict(self, at)


def _as_number(expr):
    expr = sympy.nsimplify(expr) if not expr.is_number else expr
    if expr.is_Integer:
        return int(expr)
    value = float(expr)
    return int(value) if value.is_integer() else value


# ---------------------------------------------------------------------------------------------


def _module_of(node) -> tuple[str, str]:
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


def _is_tensor(v) -> bool:
    return isinstance(v, torch.Tensor)


class _GraphCoster:
    """Converts fx nodes into OpCalls over the user's symbols and applies the rules."""

    def __init__(self, captured: Captured, overrides: dict | None = None):
        self.cap = captured
        self.meta: dict = {}
        self.overrides = overrides or {}

    def value(self, v):
        if _is_tensor(v):
            return TensorMeta(tuple(self.cap.expr(s) for s in v.shape), v.dtype)
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

    def cost(self, node) -> tuple[Cost, str]:
        target = node.target
        rule = lookup(target, self.overrides)
        val = node.meta.get("val")
        if rule is None:
            if not _contains_tensor(val):
                # shape arithmetic on SymInts (operator.mul, sym_size, ...), assertions: no tensor work
                return FREE, "free"
            return unmodeled(self.call(node)), "unmodeled"
        user = target in self.overrides or rule in USER_RULES
        try:
            cost = as_cost(rule(self.call(node)))
        except DepthscopeError:
            raise
        except Exception as exc:  # noqa: BLE001
            who = "custom rule" if user else "built-in rule"
            error = InputError if user else RuleError
            raise error(f"{who} {getattr(rule, '__name__', rule)} for {op_name(target)} (node {node.name}) "
                        f"raised {type(exc).__name__}: {exc}") from exc
        return cost, ("free" if target in FREE_OPS or cost.is_zero else "modeled")


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


class _Outputs(tuple):
    """Per-output frontiers of a node whose outputs come from a subgraph (selected by getitem)."""


# Higher-order ops that only wrap a subgraph (grad mode, autocast): cost = the subgraph's cost.
WRAPPER_HOPS = {"wrap_with_set_grad_enabled", "wrap_with_autocast", "wrap", "tag_activation_checkpoint",
                "autograd_function_apply"}


class _Walker:
    """Walks a graph (and its subgraphs) in topological order, costing nodes and tracking longest paths."""

    def __init__(self, captured: Captured, rules: dict | None):
        self.captured = captured
        self.gm = captured.graph_module
        self.coster = _GraphCoster(captured, rules)
        self.dom = Dominance(captured.symbols)
        self.records: list[NodeCost] = []
        self.record_of: dict = {}
        self.unknowns: list[tuple[str, str]] = []

    def inputs_frontier(self, node, frontier) -> list:
        entries = []
        for i in node.all_input_nodes:
            f = frontier.get(i, [ROOT])
            if isinstance(f, _Outputs):
                f = [e for part in f for e in part]
            entries.extend(f)
        return prune(entries, self.dom) or [ROOT]

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
                outputs = [self._frontier_of(o, frontier) for o in outs]
            elif node.op == "call_function":
                frontier[node] = self.visit(node, frontier, gm, prefix, records)
            else:
                raise InputError(f"unsupported graph node {node.op} {node.target} in the exported program")
        return outputs

    def _frontier_of(self, value, frontier) -> list:
        if isinstance(value, torch.fx.Node):
            f = frontier.get(value, [ROOT])
            return prune([e for part in f for e in part], self.dom) if isinstance(f, _Outputs) else f
        if isinstance(value, (list, tuple)):
            return prune([e for v in value for e in self._frontier_of(v, frontier)], self.dom) or [ROOT]
        return [ROOT]

    def visit(self, node, frontier, gm, prefix, records):
        target = node.target
        if target is operator.getitem and isinstance(frontier.get(node.args[0]), _Outputs):
            parts = frontier[node.args[0]]
            index = node.args[1]
            return parts[index] if isinstance(index, int) and -len(parts) <= index < len(parts) else self.inputs_frontier(node, frontier)
        if isinstance(target, torch._ops.HigherOrderOperator):
            handler = _HOP_HANDLERS.get(target.name())
            if handler is not None:
                result = handler(self, node, frontier, gm, prefix, records)
                if result is not None:
                    return result
        cost, status = self.coster.cost(node)
        return self.place(node, cost, status, self.inputs_frontier(node, frontier), prefix, records)

    def place(self, node, cost: Cost, status: str, merged: list, prefix: str, records: list, op: str | None = None):
        """Record a node's cost and extend the longest paths reaching it by its own depth."""
        module, mtype = _module_of(node)
        shown = standin_display(node.target, node.args)
        if shown is not None:
            op, mtype = shown[0], shown[1] or mtype
        rec = NodeCost(prefix + node.name, op or op_name(node.target), module, mtype, cost, status)
        records.append(rec)
        self.record_of[node] = rec
        if cost.depth == 0:
            return merged
        own_forms = forms_of(cost.depth)
        return prune([Entry(add_forms(e.form, own), node, own, e) for e in merged for own in own_forms], self.dom)

    # -- subgraphs -----------------------------------------------------------------------------

    def subgraph(self, gm, arg) -> torch.fx.GraphModule | None:
        if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
            sub = getattr(gm, arg.target, None)
            if isinstance(sub, torch.fx.GraphModule):
                return sub
        return None

    def body_cost(self, sub, prefix: str) -> tuple[Cost, list]:
        """Work, FLOPs and depth forms of one run of a subgraph, on its own (every input ready at time 0)."""
        scratch: list = []
        outs = self.walk(sub, None, prefix, scratch)
        final = prune([e for f in outs for e in f], self.dom) or [ROOT]
        work = sympy.Add(*[r.cost.work for r in scratch])
        flops = sympy.Add(*[r.cost.flops for r in scratch])
        return Cost(work, 0, flops), [e.form for e in final]

    def repeated(self, node, frontier, prefix, records, body: Cost, forms: list, times, depth_times, op: str):
        """A node that runs a body `times` times in work and `depth_times` times in sequence."""
        depth = sympy.Max(*[sympy.expand(depth_times * to_expr(f)) for f in forms]) if forms else sympy.S.Zero
        cost = Cost(sympy.expand(body.work * times), depth, sympy.expand(body.flops * times))
        merged = self.inputs_frontier(node, frontier)
        return self.place(node, cost, "modeled", merged, prefix, records, op=op)


def _hop_wrapper(walker: _Walker, node, frontier, gm, prefix, records):
    """Grad-mode and autocast wrappers: the subgraph runs once, inline."""
    for i, a in enumerate(node.args):
        sub = walker.subgraph(gm, a)
        if sub is not None:
            args = [walker._frontier_of(x, frontier) for x in node.args[i + 1 :]]
            return _Outputs(walker.walk(sub, args, f"{prefix}{node.name}/", records))
    return None


def _hop_cond(walker: _Walker, node, frontier, gm, prefix, records):
    """torch.cond: the predicate first, then one branch. Depth: the deeper branch; work: the larger branch."""
    pred, true_arg, false_arg, operands = node.args[:4]
    branches = [walker.subgraph(gm, true_arg), walker.subgraph(gm, false_arg)]
    if None in branches:
        return None
    pred_f = walker._frontier_of(pred, frontier)
    args = [prune(walker._frontier_of(o, frontier) + pred_f, walker.dom) for o in operands]
    costs, outputs = [], []
    for label, sub in zip(("true", "false"), branches):
        scratch: list = []
        outputs.append(walker.walk(sub, args, f"{prefix}{node.name}.{label}/", scratch))
        costs.append((sympy.Add(*[r.cost.work for r in scratch]), sympy.Add(*[r.cost.flops for r in scratch])))
    work = sympy.Max(costs[0][0], costs[1][0])
    flops = sympy.Max(costs[0][1], costs[1][1])
    module, mtype = _module_of(node)
    rec = NodeCost(prefix + node.name, "higher_order.cond", module, mtype, Cost(work, 0, flops), "modeled")
    records.append(rec)
    walker.record_of[node] = rec
    merged = [prune(a + b, walker.dom) for a, b in zip(*outputs)]
    return _Outputs(merged)


def _hop_scan(walker: _Walker, node, frontier, gm, prefix, records):
    """scan: the body runs once per element of the scanned axis, each step after the previous (depth T x body)."""
    body_arg, init, xs = node.args[:3]
    sub = walker.subgraph(gm, body_arg)
    if sub is None or not xs:
        return None
    trips = walker.coster.node_meta(xs[0]).shape[0]
    body, forms = walker.body_cost(sub, f"{prefix}{node.name}/")
    return walker.repeated(node, frontier, prefix, records, body, forms, trips, trips, "higher_order.scan")


def _hop_map(walker: _Walker, node, frontier, gm, prefix, records):
    """map: the body runs once per element of the mapped axis, all in parallel (depth of one body)."""
    body_arg, xs = node.args[:2]
    sub = walker.subgraph(gm, body_arg)
    if sub is None or not xs:
        return None
    trips = walker.coster.node_meta(xs[0]).shape[0]
    body, forms = walker.body_cost(sub, f"{prefix}{node.name}/")
    return walker.repeated(node, frontier, prefix, records, body, forms, trips, 1, "higher_order.map")


def _hop_associative_scan(walker: _Walker, node, frontier, gm, prefix, records):
    """associative_scan over n: a work-efficient (Blelloch) tree, 2(n-1) combines in 2 ceil(log2 n) levels."""
    body_arg, xs = node.args[:2]
    sub = walker.subgraph(gm, body_arg)
    if sub is None or not xs:
        return None
    dim = node.args[2] if len(node.args) > 2 and isinstance(node.args[2], int) else 0
    n = walker.coster.node_meta(xs[0]).shape[dim]
    body, forms = walker.body_cost(sub, f"{prefix}{node.name}/")
    return walker.repeated(node, frontier, prefix, records, body, forms, 2 * (n - 1), 2 * clog2(n),
                           "higher_order.associative_scan")


def _hop_while_loop(walker: _Walker, node, frontier, gm, prefix, records):
    """while_loop: the trip count is unknown statically; it becomes a named symbol in every formula."""
    cond_arg, body_arg = node.args[:2]
    cond_gm, body_gm = walker.subgraph(gm, cond_arg), walker.subgraph(gm, body_arg)
    if cond_gm is None or body_gm is None:
        return None
    name = f"{node.name}_trips"
    walker.captured.symbols[name] = SymbolInfo(name, 1, None)
    walker.dom = Dominance(walker.captured.symbols)
    walker.unknowns.append((name, f"trip count of {prefix}{node.name} (torch.while_loop), unknown before running"))
    trips = size_symbol(name)
    cond, cond_forms = walker.body_cost(cond_gm, f"{prefix}{node.name}.cond/")
    body, body_forms = walker.body_cost(body_gm, f"{prefix}{node.name}.body/")
    step = Cost(cond.work + body.work, 0, cond.flops + body.flops)
    forms = [add_forms(c, b) for c in cond_forms for b in body_forms]
    return walker.repeated(node, frontier, prefix, records, step, forms, trips, trips, "higher_order.while_loop")


_HOP_HANDLERS = {name: _hop_wrapper for name in WRAPPER_HOPS}
_HOP_HANDLERS.update(cond=_hop_cond, scan=_hop_scan, map_impl=_hop_map, map=_hop_map,
                     associative_scan=_hop_associative_scan, while_loop=_hop_while_loop)


def analyze_captured(captured: Captured, rules: dict | None = None) -> Report:
    """Cost every node, sum work, and find the longest path by pruned linear-form max."""
    with _gc_paused():
        return _analyze(captured, rules)


@contextlib.contextmanager
def _gc_paused():
    """The walk allocates many small acyclic objects; Python's cyclic GC rescanning export's large heap on every
    generation-2 pass made analysis time superlinear in graph size (48 GPT-2 layers: 0.52 s with, 0.26 s without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _analyze(captured: Captured, rules: dict | None) -> Report:
    walker = _Walker(captured, rules)
    outputs = walker.walk(walker.gm)
    final = prune([e for f in outputs for e in f], walker.dom) or [ROOT]
    report = _build_report(captured, walker.records, walker.record_of, final, walker.dom)
    used = {str(x) for e in (report.work, report.depth, report.flops) for x in e.free_symbols}
    unbacked = [(name, what) for name, what in dict(captured.unbacked).items() if name in used]
    for name, _ in dict(captured.unbacked).items():
        if name not in used:
            report.symbols.pop(name, None)  # a data-dependent size no formula depends on
    report.unknowns = unbacked + list(walker.unknowns)
    report.mode = captured.mode
    return report


def _reference_sizes(symbols: dict[str, SymbolInfo]) -> dict:
    return {s.symbol: (min(REFERENCE_SIZE, s.max) if s.max is not None else REFERENCE_SIZE) for s in symbols.values()}


def _build_report(captured: Captured, records, record_of, final, dom) -> Report:
    work = sympy.expand(sympy.Add(*[r.cost.work for r in records]))
    flops = sympy.expand(sympy.Add(*[r.cost.flops for r in records]))
    forms = [e.form for e in final]
    depth = sympy.Max(*[to_expr(f) for f in forms]) if len(forms) > 1 else to_expr(forms[0])

    ref = _reference_sizes(captured.symbols)
    critical = max(final, key=lambda e: float(evaluate(to_expr(e.form), ref)))
    path = []
    op_depth: dict = defaultdict(lambda: sympy.S.Zero)
    module_depth: dict = defaultdict(lambda: sympy.S.Zero)
    for entry in critical.chain():
        rec = record_of[entry.node]
        step_depth = to_expr(entry.own)
        path.append(PathStep(rec.name, rec.op, rec.module, step_depth))
        op_depth[rec.op] += step_depth
        for prefix in _prefixes(rec.module):
            module_depth[prefix] += step_depth

    by_op: dict = {}
    for r in records:
        s = by_op.setdefault(r.op, [0, [], r.status])
        s[0] += 1
        s[1].append(r.cost.work)
    ops = [OpSummary(op, c, sympy.expand(sympy.Add(*w)), op_depth.get(op, sympy.S.Zero), st) for op, (c, w, st) in by_op.items()]
    ops.sort(key=lambda o: (-float(evaluate(o.work, ref)), o.op))

    by_module: dict = {}
    for r in records:
        for prefix in _prefixes(r.module):
            entry = by_module.setdefault(prefix, [r.module_type if prefix == r.module else "", []])
            entry[1].append(r.cost.work)
            if prefix == r.module and not entry[0]:
                entry[0] = r.module_type
    modules = [ModuleSummary(p, t, sympy.expand(sympy.Add(*w)), module_depth.get(p, sympy.S.Zero)) for p, (t, w) in by_module.items()]

    unmodeled = sorted(((o.op, o.count) for o in ops if o.status == "unmodeled"), key=lambda x: (-x[1], x[0]))
    return Report(
        model=captured.name,
        symbols=dict(sorted(captured.symbols.items())),
        work=work,
        depth=depth,
        flops=flops,
        ops=ops,
        modules=modules,
        critical_path=path,
        unmodeled=unmodeled,
        node_count=len(records),
        nodes=records,
    )


def _prefixes(path: str) -> list[str]:
    """'' (the root) for nodes outside any submodule; else every ancestor path: a, a.b, a.b.c."""
    if not path:
        return [""]
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


