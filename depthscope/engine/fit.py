"""Sweep and fit: exact counts at a ladder of sizes, fitted exactly as sums of size**a * log2(size)**c.

One loop serves both fitted engines: fitted Dims (the whole count is one coefficient) and fitted hyperparameters
(each coefficient of a formula that is symbolic in the Dims). Per symbol, the smallest set of terms that reproduces
a one-dimensional sweep is chosen; then the products of those terms are solved jointly on a grid, in rational
arithmetic, and checked on sizes held out of the fit. Sizes are powers of two, where ceil(log2 n) = log2 n.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import sympy

from depthscope.errors import InputError
from depthscope.symbols import size_symbol

LOG2 = sympy.log(2)
METRICS = ("work", "depth", "flops")
# Per-symbol candidate terms (power of size, power of log2 size), simplest first.
CANDIDATES = [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2)]
MAX_TERMS = 3  # terms per symbol besides the constant

Coefficients = dict  # {monomial in the exact symbols (1 for a plain count): Fraction}
Measure = Callable[[dict], dict]  # sizes -> {metric: Coefficients}


def term_value(term, v: int) -> Fraction:
    """v**a * log2(v)**c for term (a, c); log2 v exact at the powers of two the ladders use."""
    a, c = term
    return Fraction(v) ** a * Fraction(v.bit_length() - 1) ** c


def basis_value(basis_term: dict, sizes: dict[str, int]) -> Fraction:
    """A basis term {name: (a, c)} evaluated at sizes."""
    out = Fraction(1)
    for name, term in basis_term.items():
        out *= term_value(term, sizes[name])
    return out


def solve(rows: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction] | None:
    """Exact least-squares-free solve of a square (or tall, first-n rows independent) system; None if singular."""
    n = len(rows[0])
    # pick n independent rows greedily by Gaussian elimination
    m = [list(r) + [y] for r, y in zip(rows, rhs)]
    chosen: list[list[Fraction]] = []
    for row in m:
        candidate = chosen + [row]
        if rank(candidate, n) == len(candidate):
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


def rank(rows, n) -> int:
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


def fits(basis: list[dict], points: list[tuple[dict, int]]) -> list[Fraction] | None:
    """Coefficients of `basis` that reproduce every point exactly, or None."""
    rows = [[basis_value(t, s) for t in basis] for s, _ in points]
    coeffs = solve(rows, [Fraction(y) for _, y in points])
    if coeffs is None:
        return None
    for row, (_, y) in zip(rows, points):
        if sum(c * x for c, x in zip(coeffs, row)) != y:
            return None
    return coeffs


def detect_terms(name: str, points: list[tuple[dict, int]]) -> list[tuple] | None:
    """The smallest set of per-symbol terms that fits a 1-D sweep exactly (constant always included)."""
    for k in range(0, MAX_TERMS + 1):
        for subset in itertools.combinations(CANDIDATES, k):
            basis = [{}] + [{name: t} for t in subset]
            if len(points) < len(basis) + 1:
                continue
            if fits(basis, points) is not None:
                return list(subset)
    return None


def to_expr(basis: list[dict], coeffs: list[Fraction]) -> sympy.Expr:
    """sum(c * prod(name**a * log2(name)**c)) as a sympy expression."""
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


@dataclass(frozen=True)
class Fitted:
    """Fitted formulas per metric, the sizes that chose and solved them, and the held-out check."""

    formulas: dict
    sizes: tuple
    heldout: tuple
    heldout_passed: bool
    failures: tuple  # (sizes, metric, fitted value, measured value) where the held-out check failed


class Sweep:
    """Measures at sizes once each (a dict from sizes to coefficients), within a time budget."""

    def __init__(self, measure: Measure, deadline: float, what: str):
        self.measure, self.deadline, self.what = measure, deadline, what
        self.cache: dict = {}

    def at(self, sizes: dict) -> dict:
        key = tuple(sorted(sizes.items()))
        if key not in self.cache:
            if time.perf_counter() > self.deadline:
                raise InputError(f"the {self.what} ran out of time before the sweep finished")
            self.cache[key] = self.measure(dict(sizes))
        return self.cache[key]


def fit_sweep(names: list[str], ladders: dict[str, list[int]], base: dict[str, int], sweep: Sweep,
              describe: Callable[[str, object], str]) -> Fitted:
    """Fit every metric in `names` over their ladders (the top rung of each is held out).

    Each name is swept alone with the others at `base`; the chosen terms are then solved jointly on a grid.
    `describe(metric, monomial)` names what failed to fit in the error message.
    """
    used: list[dict] = []
    formulas: dict = {}
    for metric in METRICS:
        per_name: dict[str, list] = {}
        for name in names:
            points = []
            for v in ladders[name][:-1]:
                sizes = dict(base, **{name: v})
                used.append(sizes)
                points.append(({name: v}, sweep.at(sizes)[metric]))
            terms: set = set()
            for mono in set().union(*[set(c) for _, c in points]):
                found = detect_terms(name, [(p, c.get(mono, 0)) for p, c in points])
                if found is None:
                    raise InputError(f"no sum of {name}**a * log2({name})**c terms (a <= 3, c <= 2, up to {MAX_TERMS} "
                                     f"terms) fits {describe(metric, mono)} over {name} = "
                                     f"{', '.join(map(str, ladders[name][:-1]))}; the fitted engine cannot describe it")
                terms.update(found)
            per_name[name] = sorted(terms)
        basis = [{k: v for k, v in (item for item in combo if item)} for combo in
                 itertools.product(*[[None] + [(n, t) for t in per_name[n]] for n in names])]
        axes = {n: ladders[n][: len(per_name[n]) + 2] for n in names}
        grid = [dict(base, **dict(zip(axes, combo))) for combo in itertools.product(*axes.values())]
        used.extend(grid)
        values = [(g, sweep.at(g)[metric]) for g in grid]
        total = sympy.S.Zero
        for mono in set().union(*[set(c) for _, c in values]):
            coeffs = fits(basis, [(g, c.get(mono, 0)) for g, c in values])
            if coeffs is None:
                raise InputError(f"no product of the per-symbol terms fits {describe(metric, mono)} jointly in "
                                 f"{', '.join(names)}; the fitted engine cannot describe it")
            total += to_expr(basis, coeffs) * mono
        formulas[metric] = sympy.expand(total)

    heldout = [dict(base, **{n: ladders[n][-1]}) for n in names]
    if len(names) > 1:
        heldout.append(dict(base, **{n: ladders[n][-1] for n in names}))
    heldout = [h for i, h in enumerate(heldout) if h not in heldout[:i]]
    failures = []
    for sizes in heldout:
        measured = sweep.at(sizes)
        subs = {size_symbol(n): sizes[n] for n in names}
        for metric in METRICS:
            fitted = sympy.expand(formulas[metric].xreplace(subs))
            truth = sympy.Add(*[sympy.Rational(c.numerator, c.denominator) * mono for mono, c in measured[metric].items()])
            if sympy.expand(sympy.nsimplify(fitted) - truth) != 0:
                failures.append((sizes, metric, fitted, truth))
    unique = tuple(dict(t) for t in dict.fromkeys(tuple(sorted(u.items())) for u in used))
    return Fitted(formulas, unique, tuple(heldout), not failures, tuple(failures))


def coefficients(expr: sympy.Expr, metric: str) -> Coefficients:
    """{monomial in the exact symbols' atoms: rational coefficient} of an expanded formula."""
    if expr.has(sympy.Max):
        raise InputError(f"the model's {metric} is a Max of paths no size range orders; symbolic hyperparameters need "
                         "one closed form per build")
    out: dict = {}
    for term in sympy.Add.make_args(sympy.expand(expr)):
        coeff, rest = term.as_coeff_Mul()
        if not coeff.is_Rational:
            raise InputError(f"cannot fit the {metric} term {term}: its coefficient is not rational")
        out[rest] = out.get(rest, Fraction(0)) + Fraction(int(coeff.p), int(coeff.q))
    return out
