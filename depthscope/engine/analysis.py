"""The Analysis: one immutable result for every engine, with its provenance and views at the caller's sizes."""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

import sympy

from depthscope.complexity import big_o
from depthscope.cost.traffic import FAST_MEMORY
from depthscope.engine.fusion import bytes_fused
from depthscope.engine.paths import to_expr
from depthscope.engine.summaries import (ModuleSummary, OpSummary, intensities, module_prefixes, module_totals,
                                         op_totals)
from depthscope.engine.walk import NodeCost, Walked, walk_captured
from depthscope.errors import InputError
from depthscope.symbols import ZERO, SymbolInfo, evaluate, size_symbol

DISPLAY_SIZE = 1024  # views use this size per symbol (clamped into its range) when the caller gives none

EXACT = "exact"  # formulas derived from the symbolic graph
FITTED_EXACT = "fitted-exact"  # fitted from exact counts; reproduces every held-out size
APPROXIMATE = "approximate"  # some number is not exact: see `Provenance.reasons`


@dataclass(frozen=True)
class Formulas:
    """Work, depth, matmul-family FLOPs, bytes (unfused and fused) and I/O of a whole model as sympy expressions."""

    work: sympy.Expr
    depth: sympy.Expr
    flops: sympy.Expr
    bytes: sympy.Expr = ZERO
    bytes_fused: sympy.Expr = ZERO
    io: sympy.Expr = ZERO


@dataclass(frozen=True)
class FitInfo:
    """What a fitted engine measured: the sizes used to choose and solve the fit, and the held-out check."""

    sizes: tuple = ()
    heldout: tuple = ()
    heldout_passed: bool = True
    seconds: float = 0.0
    fitted_in: tuple = ()  # the symbols whose dependence was fitted

    def to_dict(self) -> dict:
        return {"fitted_in": list(self.fitted_in), "sizes": [dict(s) for s in self.sizes],
                "heldout": [dict(s) for s in self.heldout], "heldout_passed": self.heldout_passed}


@dataclass(frozen=True)
class Provenance:
    """How the numbers were obtained, and how far they can be trusted."""

    engine: str = "symbolic"  # "symbolic" or "fitted"
    mode: str = "inference"  # or "train": forward and backward
    exactness: str = EXACT  # EXACT, FITTED_EXACT or APPROXIMATE
    reasons: tuple[str, ...] = ()  # why the result is fitted or approximate, one sentence each
    fit: FitInfo | None = None
    fallback: str | None = None  # why the symbolic engine was not used, when it fell back
    breakdown_at: Mapping | None = None  # fitted: the sizes of the build whose nodes and paths are shown

    def __post_init__(self):
        if self.breakdown_at is not None:
            object.__setattr__(self, "breakdown_at", MappingProxyType(dict(self.breakdown_at)))

    def to_dict(self) -> dict:
        out = {"engine": self.engine, "mode": self.mode, "exactness": self.exactness, "reasons": list(self.reasons),
               "fallback": self.fallback}
        if self.breakdown_at is not None:
            out["breakdown_at"] = dict(self.breakdown_at)
        return out


@dataclass(frozen=True)
class PathStep:
    node: str
    op: str
    module: str
    depth: sympy.Expr  # this step's own depth


@dataclass(frozen=True)
class CriticalPath:
    """One longest chain of dependent ops that no other chain dominates at every size in range."""

    depth: sympy.Expr
    steps: tuple[PathStep, ...]


@dataclass(frozen=True, eq=False)
class Analysis:
    """Symbolic work, depth, FLOPs and bytes of a model, every node's cost, the candidate critical paths, provenance."""

    model: str
    symbols: Mapping[str, SymbolInfo]
    work: sympy.Expr
    depth: sympy.Expr
    flops: sympy.Expr
    nodes: tuple[NodeCost, ...] = field(repr=False)
    paths: tuple[CriticalPath, ...] = field(repr=False)
    unmodeled: tuple[tuple[str, int], ...] = ()
    unknowns: tuple[tuple[str, str], ...] = ()  # (symbol, what it stands for)
    provenance: Provenance = Provenance()
    op_totals: tuple = field(default=(), repr=False)  # (op, count, status, work, flops, bytes, io), from the nodes
    module_totals: tuple = field(default=(), repr=False)  # (path, type, work, flops, bytes, io) per module path
    bytes: sympy.Expr = ZERO  # every op's inputs read and outputs written, unfused
    bytes_fused: sympy.Expr = ZERO  # an estimate with Inductor-like fusion (engine/fusion.py)
    io: sympy.Expr = ZERO  # bytes between slow memory and a fast memory of FAST_MEMORY bytes (tiled bounds)
    fast_memory: int | None = None  # the fast memory's size in bytes, when given (io has it substituted)

    # -- provenance, for short ------------------------------------------------------------------

    @property
    def engine(self) -> str:
        return self.provenance.engine

    @property
    def mode(self) -> str:
        return self.provenance.mode

    @property
    def exactness(self) -> str:
        return self.provenance.exactness

    @property
    def is_exact(self) -> bool:
        """True unless some number is approximate (unmodeled ops, a failed held-out check, ...)."""
        return self.provenance.exactness != APPROXIMATE

    @property
    def fit(self) -> FitInfo | None:
        return self.provenance.fit

    @property
    def breakdown_at(self) -> dict | None:
        at = self.provenance.breakdown_at
        return dict(at) if at is not None else None

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    # -- formulas -------------------------------------------------------------------------------

    @property
    def parallelism(self) -> sympy.Expr:
        """W / D: how many processors the model can keep busy (0 for a model that computes nothing)."""
        return self.work / self.depth if self.depth != 0 else sympy.S.Zero

    @property
    def big_o(self) -> dict[str, sympy.Expr]:
        work, depth = big_o(self.work), big_o(self.depth)
        return {"work": work, "depth": depth, "parallelism": work / depth, "bytes": big_o(self.bytes),
                "bytes_fused": big_o(self.bytes_fused), "io": big_o(self.io)}

    def with_fast_memory(self, size: int | None) -> Analysis:
        """This analysis with the fast memory's size (bytes) substituted for FAST_MEMORY in its I/O."""
        if size is None:
            return self
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InputError(f"the fast memory size must be a positive number of bytes, got {size!r}")
        return replace(self, io=self.io.xreplace({FAST_MEMORY: sympy.Integer(size)}), fast_memory=size)

    def _io_values(self, fast_memory: int | None) -> dict:
        size = self.fast_memory if fast_memory is None else fast_memory
        return {} if size is None else {FAST_MEMORY: size}

    def symbol_values(self, sizes: Mapping[str, int]) -> dict[sympy.Symbol, int]:
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

    def evaluate(self, fast_memory: int | None = None, **sizes: int) -> dict[str, float | int]:
        """Work, depth, FLOPs, parallelism, bytes (unfused, fused) and intensities at concrete sizes (exact integers
        for the counts), and the I/O when the fast memory's size is known (`fast_memory` bytes, or the analysis's)."""
        values = self.symbol_values(sizes)
        work = as_number(evaluate(self.work, values))
        depth = as_number(evaluate(self.depth, values))
        flops = as_number(evaluate(self.flops, values))
        moved = as_number(evaluate(self.bytes, values))
        per_byte = intensities(work, flops, moved)
        out = {"work": work, "depth": depth, "flops": flops, "parallelism": work / depth if depth else 0.0,
               "bytes": moved, "bytes_fused": as_number(evaluate(self.bytes_fused, values)),
               "flops_per_byte": per_byte[0], "work_per_byte": per_byte[1]}
        io = evaluate(self.io, {**values, **self._io_values(fast_memory)})
        if not io.free_symbols:
            out["io"] = as_number(io)
        return out

    # -- views at the caller's sizes ------------------------------------------------------------

    def view_sizes(self, at: Mapping[str, int] | None = None) -> dict[str, int]:
        """The sizes views are taken at: `at` (checked, complete), else DISPLAY_SIZE per symbol within its range."""
        if at:
            self.symbol_values(at)
            return dict(at)
        sizes = {}
        for name, info in self.symbols.items():
            value = max(info.min, DISPLAY_SIZE)
            sizes[name] = min(value, info.max) if info.max is not None else value
        return sizes

    def value(self, expr, sizes: Mapping[str, int]) -> float:
        """expr (over this analysis's symbols, or over the breakdown build's) as a number at `sizes` (an I/O formula:
        at the analysis's fast memory; NaN without one)."""
        got = evaluate(expr, {**self._breakdown_values(sizes), **self._io_values(None)})
        return float(got) if not got.free_symbols else float("nan")

    def _breakdown_values(self, sizes: Mapping[str, int]) -> dict:
        merged = dict(sizes)
        if self.provenance.breakdown_at:
            merged.update(self.provenance.breakdown_at)  # nodes of a fitted analysis are those of one build
        return {size_symbol(k): v for k, v in merged.items()}

    def _moved(self, work, depth, flops, moved, io, sizes) -> dict:
        """The Moved fields of a summary: its formulas (I/O at the fast memory, if given), intensities at sizes."""
        per_byte = intensities(self.value(work, sizes), self.value(flops, sizes), self.value(moved, sizes))
        io = io.xreplace({FAST_MEMORY: sympy.Integer(self.fast_memory)}) if self.fast_memory else io
        return {"work": work, "depth": depth, "flops": flops, "bytes": moved, "io": io, "flops_per_byte": per_byte[0], "work_per_byte": per_byte[1]}

    def critical_path(self, at: Mapping[str, int] | None = None) -> CriticalPath:
        """The longest of the candidate paths at `at` (default: the display sizes): its steps' depths add up to it."""
        if not self.paths:
            return CriticalPath(sympy.S.Zero, ())
        sizes = self.view_sizes(at)
        return max(self.paths, key=lambda p: self.value(p.depth, sizes))

    def ops(self, at: Mapping[str, int] | None = None) -> list[OpSummary]:
        """Work per op (heaviest first at the sizes) and each op's part of the critical path there."""
        sizes = self.view_sizes(at)
        depth: dict = defaultdict(lambda: sympy.S.Zero)
        for step in self.critical_path(sizes).steps:
            depth[step.op] += step.depth
        ops = [OpSummary(op, count, status, **self._moved(work, depth.get(op, sympy.S.Zero), flops, moved, io, sizes))
               for op, count, status, work, flops, moved, io in self.op_totals]
        ops.sort(key=lambda o: (-self.value(o.work, sizes), o.op))
        return ops

    def modules(self, at: Mapping[str, int] | None = None) -> list[ModuleSummary]:
        """Work per module path (every ancestor included; "" is the root's own ops) and its part of the path."""
        sizes = self.view_sizes(at)
        depth: dict = defaultdict(lambda: sympy.S.Zero)
        for step in self.critical_path(sizes).steps:
            for prefix in module_prefixes(step.module):
                depth[prefix] += step.depth
        return [ModuleSummary(path, mtype, **self._moved(work, depth.get(path, sympy.S.Zero), flops, moved, io, sizes))
                for path, mtype, work, flops, moved, io in self.module_totals]

    def to_dict(self, at: Mapping[str, int] | None = None) -> dict:
        from depthscope.report.json import report_dict

        return report_dict(self, at)


Report = Analysis  # the name before the Analysis had provenance


def as_number(expr):
    """An evaluated formula as an int when integral, else a float."""
    expr = sympy.nsimplify(expr) if not expr.is_number else expr
    if expr.is_Integer:
        return int(expr)
    value = float(expr)
    return int(value) if value.is_integer() else value


# ---------------------------------------------------------------------------------------------
# The one constructor


def formulas_of(walked: Walked) -> Formulas:
    """Total work, FLOPs, bytes and I/O (sums over nodes), fused bytes (engine/fusion.py) and depth (the max over
    the non-dominated paths) of a walk."""
    def total(part: str) -> sympy.Expr:
        return sympy.expand(sympy.Add(*[getattr(r.cost, part) for r in walked.records]))

    forms = [to_expr(e.form) for e in walked.final]
    depth = sympy.Max(*forms) if len(forms) > 1 else forms[0]
    return Formulas(total("work"), depth, total("flops"), total("bytes"), bytes_fused(walked), total("io"))


def paths_of(walked: Walked) -> tuple[CriticalPath, ...]:
    """Every non-dominated longest path of a walk, as steps with their own depths."""
    own_depth = functools.lru_cache(maxsize=None)(to_expr)
    out = []
    for entry in walked.final:
        steps = []
        for link in entry.chain():
            rec = walked.record_of[link.node]
            steps.append(PathStep(rec.name, rec.op, rec.module, own_depth(link.own)))
        out.append(CriticalPath(to_expr(entry.form), tuple(steps)))
    return tuple(out)


def build_analysis(walked: Walked, provenance: Provenance, formulas: Formulas | None = None,
                   symbols: Mapping[str, SymbolInfo] | None = None) -> Analysis:
    """The Analysis of a walk; a fitted engine passes its fitted `formulas` and `symbols` over the walk's build.

    The exactness is demoted to approximate, with the reason, when some op has no cost rule.
    """
    exact = formulas_of(walked)
    formulas = formulas or exact
    captured = walked.captured
    used = {str(x) for e in (formulas.work, formulas.depth, formulas.flops, formulas.bytes) for x in e.free_symbols}
    unbacked = dict(captured.unbacked)
    if symbols is None:
        # a data-dependent size that no formula depends on is not a symbol of the result
        symbols = {name: info for name, info in captured.symbols.items() if name not in unbacked or name in used}
    unknowns = tuple((name, what) for name, what in unbacked.items() if name in used) + tuple(walked.unknowns)

    counts: dict = {}
    for node in walked.records:
        if node.status == "unmodeled":
            counts[node.op] = counts.get(node.op, 0) + 1
    unmodeled = tuple(sorted(counts.items(), key=lambda x: (-x[1], x[0])))
    if unmodeled:
        listing = ", ".join(f"{op} x{count}" for op, count in unmodeled)
        provenance = _demoted(provenance, f"{sum(counts.values())} node(s) have no cost rule and were counted at "
                                          f"the default (work = output elements, depth 1): {listing}")
    return Analysis(
        model=captured.name,
        symbols=MappingProxyType(dict(sorted(symbols.items()))),
        work=formulas.work,
        depth=formulas.depth,
        flops=formulas.flops,
        bytes=formulas.bytes,
        bytes_fused=formulas.bytes_fused,
        io=formulas.io,
        nodes=tuple(walked.records),
        paths=paths_of(walked),
        unmodeled=unmodeled,
        unknowns=unknowns,
        provenance=provenance,
        op_totals=op_totals(walked.records),
        module_totals=module_totals(walked.records),
    )


def analyze_captured(captured, rules: dict | None = None) -> Analysis:
    """The symbolic engine's Analysis of a captured program (its mode taken from the capture)."""
    return build_analysis(walk_captured(captured, rules), Provenance("symbolic", captured.mode))


def _demoted(provenance: Provenance, reason: str) -> Provenance:
    from dataclasses import replace

    return replace(provenance, exactness=APPROXIMATE, reasons=provenance.reasons + (reason,))
