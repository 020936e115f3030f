"""The fitted engine: exact work and depth at a sweep of concrete sizes, fitted to sums of size^a * log2(size)^c.

For models torch.export cannot keep symbolic (Python loops over a dynamic size, recurrences that specialise the
length), each size is exported statically and analysed exactly; the counts are then fitted with exact rational
arithmetic. Sizes are powers of two, where ceil(log2 n) = log2 n, so logarithmic terms fit exactly too. The fit is
chosen on some sizes and confirmed on sizes held out of it.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field, replace
from fractions import Fraction

import sympy
import torch

from depthscope.engine.analysis import Report, analyze_captured
from depthscope.capture.captured import capture
from depthscope.capture.dims import fit_symbols, resized_spec
from depthscope.model_file import ModelSpec
from depthscope.errors import InputError
from depthscope.symbols import SymbolInfo, size_symbol

LOG2 = sympy.log(2)
# Per-symbol candidate terms (power of size, power of log2 size), simplest first.
CANDIDATES = [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2)]
MAX_TERMS = 3  # terms per symbol besides the constant


@dataclass
class FitInfo:
    """What the fitted engine measured: sizes used to choose and solve the fit, and the held-out check."""

    sizes: list[dict[str, int]] = field(default_factory=list)
    heldout: list[dict[str, int]] = field(default_factory=list)
    heldout_passed: bool = True
    seconds: float = 0.0
    fitted_in: list[str] = field(default_factory=list)  # the symbols whose dependence was fitted

    def to_dict(self) -> dict:
        return {"fitted_in": self.fitted_in, "sizes": self.sizes, "heldout": self.heldout,
                "heldout_passed": self.heldout_passed}


# ---------------------------------------------------------------------------------------------
# Dims in the user's spec, and inputs resized to given sizes


# ---------------------------------------------------------------------------------------------
# Exact rational fitting


def _term_value(term, v: int) -> Fraction:
    a, c = term
    return Fraction(v) ** a * Fraction(v.bit_length() - 1) ** c


def _basis_value(basis_term: dict, sizes: dict[str, int]) -> Fraction:
    out = Fraction(1)
    for name, term in basis_term.items():
        out *= _term_value(term, sizes[name])
    return out


def _solve(rows: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction] | None:
    """Exact least-squares-free solve of a square (or tall, first-n rows independent) system; None if singular."""
    n = len(rows[0])
    # pick n independent rows greedily by Gaussian elimination
    m = [list(r) + [y] for r, y in zip(rows, rhs)]
    chosen: list[list[Fraction]] = []
    for row in m:
        candidate = chosen + [row]
        if _rank(candidate, n) == len(candidate):
            chosen = candidate
        if len(chosen) == n:
            break
    if len(chosen) < n:
        return None
    a = [r[:] for r in chosen]
    for col in range(n):
        pivot = next((r for r in range(col, n) if a[r][col] != 0), None)
        if pivot is None:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(n):
            if r != col and a[r][col] != 0:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col])]
    return [a[i][n] / a[i][i] for i in range(n)]


def _rank(rows, n) -> int:
    a = [r[:n] for r in rows]
    rank = 0
    for col in range(n):
        pivot = next((r for r in range(rank, len(a)) if a[r][col] != 0), None)
        if pivot is None:
            continue
        a[rank], a[pivot] = a[pivot], a[rank]
        for r in range(len(a)):
            if r != rank and a[r][col] != 0:
                f = a[r][col] / a[rank][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[rank])]
        rank += 1
    return rank


def _fits(basis: list[dict], points: list[tuple[dict, int]]) -> list[Fraction] | None:
    rows = [[_basis_value(t, s) for t in basis] for s, _ in points]
    coeffs = _solve(rows, [Fraction(y) for _, y in points])
    if coeffs is None:
        return None
    for row, (_, y) in zip(rows, points):
        if sum(c * x for c, x in zip(coeffs, row)) != y:
            return None
    return coeffs


def _detect_terms(name: str, points: list[tuple[dict, int]]) -> list[tuple] | None:
    """The smallest set of per-symbol terms that fits a 1-D sweep exactly (constant always included)."""
    for k in range(0, MAX_TERMS + 1):
        for subset in itertools.combinations(CANDIDATES, k):
            basis = [{}] + [{name: t} for t in subset]
            if len(points) < len(basis) + 1:
                continue
            if _fits(basis, points) is not None:
                return list(subset)
    return None


def _to_expr(basis: list[dict], coeffs: list[Fraction]) -> sympy.Expr:
    terms = []
    for term, c in zip(basis, coeffs):
        if c == 0:
            continue
        factor = sympy.Rational(c.numerator, c.denominator)
        for name, (a, lc) in term.items():
            s = size_symbol(name)
            factor *= s**a * (sympy.log(s) / LOG2) ** lc
        terms.append(factor)
    return sympy.expand(sympy.Add(*terms))


# ---------------------------------------------------------------------------------------------


class _Sweep:
    """Analyses the model at concrete sizes (static export), caching each size."""

    def __init__(self, spec: ModelSpec, train: bool, rules, deadline: float):
        self.spec, self.train, self.rules, self.deadline = spec, train, rules, deadline
        self.cache: dict[tuple, Report] = {}

    def at(self, sizes: dict[str, int]) -> Report:
        key = tuple(sorted(sizes.items()))
        if key not in self.cache:
            if time.perf_counter() > self.deadline:
                raise InputError("the fitted engine ran out of time before the sweep finished; "
                                 "smaller example sizes or a lower Dim max make each export faster")
            spec = resized_spec(self.spec, sizes)
            self.cache[key] = analyze_captured(capture(spec, train=self.train), rules=self.rules)
        return self.cache[key]


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _ladder(info: SymbolInfo, count: int) -> list[int]:
    """Powers of two inside the symbol's range, from the smallest at least max(min, 4)."""
    start = max(info.min, 4)
    p = 1 << (start - 1).bit_length()
    out = []
    while len(out) < count and (info.max is None or p <= info.max):
        out.append(p)
        p *= 2
    return out


def analyze_fitted(spec: ModelSpec, train: bool = False, rules=None, points: int = 5, budget_s: float = 300.0) -> Report:
    """Fit work, depth and FLOPs over powers-of-two sweeps of every Dim; confirm on held-out sizes."""
    start = time.perf_counter()
    symbols = fit_symbols(spec)
    sweep = _Sweep(spec, train, rules, start + budget_s)
    if not symbols:
        report = sweep.at({})
        report.engine = "fitted"
        report.fit = FitInfo([{}], [], True, time.perf_counter() - start, fitted_in=[])
        return report
    ladders = {name: _ladder(info, points + 1) for name, info in symbols.items()}
    for name, ladder in ladders.items():
        if len(ladder) < 3:
            raise InputError(f"the fitted engine needs at least 3 powers of two in {name}'s range; widen the Dim's bounds")
    base = {name: ladder[0] for name, ladder in ladders.items()}

    metrics = {"work": lambda r: r.work, "depth": lambda r: r.depth, "flops": lambda r: r.flops}
    exprs: dict[str, sympy.Expr] = {}
    used: dict[tuple, dict] = {}
    for metric, get in metrics.items():
        per_symbol = {}
        for name, ladder in ladders.items():
            pts = []
            for v in ladder[:-1]:  # the top rung is held out
                sizes = dict(base, **{name: v})
                used[tuple(sorted(sizes.items()))] = sizes
                pts.append((sizes, int(get(sweep.at(sizes)))))
            terms = _detect_terms(name, pts)
            if terms is None:
                raise InputError(f"no sum of {name}**a * log2({name})**c terms (a <= 3, c <= 2, up to {MAX_TERMS} terms) "
                                 f"fits the model's {metric} over {name} = {', '.join(map(str, ladder[:-1]))}; "
                                 "the fitted engine cannot describe it")
            per_symbol[name] = terms
        basis = [{k: v for k, v in (item for item in term if item)} for term in
                 itertools.product(*[[None] + [(name, t) for t in terms] for name, terms in per_symbol.items()])]
        grid_axes = {name: ladders[name][: len(per_symbol[name]) + 2] for name in per_symbol}
        pts = []
        for combo in itertools.product(*grid_axes.values()):
            sizes = dict(zip(grid_axes, combo))
            used[tuple(sorted(sizes.items()))] = sizes
            pts.append((sizes, int(get(sweep.at(sizes)))))
        coeffs = _fits(basis, pts)
        if coeffs is None:
            raise InputError(f"no product of the per-symbol terms fits the model's {metric} jointly in "
                             f"{', '.join(symbols)}; the fitted engine cannot describe it")
        exprs[metric] = _to_expr(basis, coeffs)

    # held out: the top rung of every symbol, alone and together
    heldout = [dict(base, **{name: ladders[name][-1]}) for name in ladders]
    heldout.append({name: ladders[name][-1] for name in ladders})
    heldout = [h for i, h in enumerate(heldout) if h not in heldout[:i]]
    passed = True
    for sizes in heldout:
        report = sweep.at(sizes)
        values = {size_symbol(k): v for k, v in sizes.items()}
        for metric, get in metrics.items():
            if sympy.nsimplify(exprs[metric].xreplace(values)) != int(get(report)):
                passed = False

    largest = max(used.values(), key=lambda s: (_product(s.values()), min(s.values())))
    report = sweep.at(largest)
    report.engine = "fitted"
    report.symbols = symbols
    report.work, report.depth, report.flops = exprs["work"], exprs["depth"], exprs["flops"]
    report.fit = FitInfo(sorted(used.values(), key=lambda s: tuple(s.values())), heldout, passed,
                         time.perf_counter() - start, fitted_in=sorted(symbols))
    report.breakdown_at = largest
    if not passed:
        print("depthscope: warning: the fitted formulas do not reproduce the held-out sizes "
              f"{heldout}; treat them as approximate", file=sys.stderr)
    return report
