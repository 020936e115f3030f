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
from depthscope.engine import control_flow  # noqa: F401 - registers the higher-order op handlers
from depthscope.engine.walk import NodeCost, walk_captured
from depthscope.cost.value import FREE, Cost
from depthscope.engine.paths import ROOT, Dominance, Entry, add_forms, forms_of, prune, to_expr
from depthscope.errors import DepthscopeError, InputError, RuleError
from depthscope.cost.registry import FREE_OPS, USER_RULES, OpCall, TensorMeta, as_cost, lookup, op_name, unmodeled
from depthscope.capture.standins import standin_display
from depthscope.complexity import big_o
from depthscope.symbols import SymbolInfo, clog2, evaluate, size_symbol

SCHEMA = "depthscope.report/1"
REFERENCE_SIZE = 2**16  # sizes used to pick the critical path among incomparable ones (capped by Dim max)


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



def analyze_captured(captured: Captured, rules: dict | None = None) -> Report:
    """Cost every node, sum work, and find the longest path by pruned linear-form max."""
    walked = walk_captured(captured, rules)
    walker = walked
    report = _build_report(captured, walked.records, walked.record_of, walked.final, walked.dominance)
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


