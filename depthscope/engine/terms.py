"""The terms fitted formulas are made of, evaluated exactly at any integer size, and exact linear algebra over them.

A per-symbol term is one of

- `(a, c)`: v**a * ceil(log2 v)**c (a <= 3, c <= 2): polynomials and the depth of reduction trees;
- `("div", ((k, r), ...))`: a product of one or two sizes floor((v + r) / 2**k): what strided convolutions and
  poolings make of a size (floor((v - 1)/2) + 1 = floor((v + 1)/2) = ceil(v/2), a 2x2 pool floor(v/2), one after
  the other floor((floor((v + 1)/2) + 1)/2) = floor((v + 3)/4), ...; (0, 0) is v itself);
- `("log-div", (k, r))`: ceil(log2 floor((v + r) / 2**k)): a reduction over such a size; `("log-sq", (k, r))`:
  ceil(log2 floor((v + r) / 2**k)**2), a reduction over a square of it (one Dim for both sides of an image).

Every term is evaluated with integer arithmetic (bit lengths, shifts), so the fit is exact at every size, not only
at powers of two. A basis term is a product {name: term}; the key `LOG_OF` holds a joint term
ceil(log2(u_1(v_1) * u_2(v_2) ...)), a reduction over a tensor whose extent is a product of sizes of several symbols
(global pooling over H x W), which no product of per-symbol terms is.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import sympy

from depthscope.symbols import clog2, ilog2_ceil, size_symbol

LOG_OF = "log of"  # basis-term key of a joint ceil(log2(product)) term: ((name, inner term), ...)
LOG_KINDS = ("log-div", "log-sq")
SMOOTH = [(1, 0), (0, 1), (2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2)]  # simplest first


def ceil_atom(k: int) -> tuple:
    return (k, (1 << k) - 1)


def floor_atom(k: int) -> tuple:
    return (k, 0)


def rounding_family(atoms: list, degree: int, logs: bool) -> list:
    """The terms over `atoms` ((k, r) pairs): each atom, with degree 2 every product of two, with `logs` the
    logarithm of each."""
    out = [("div", (a,)) for a in atoms]
    if degree >= 2:
        out += [("div", pair) for pair in itertools.combinations_with_replacement(atoms, 2)]
    if logs:  # coarsest first: of logarithms that agree along one symbol, the fit keeps the coarsest size
        coarse_first = sorted(atoms, key=lambda a: (-a[0], a[1]))
        out += [("log-div", a) for a in coarse_first if a != (0, 0)] + [("log-sq", a) for a in coarse_first]
    return out


def atom_value(atom: tuple, v: int) -> int:
    k, r = atom
    return (v + r) >> k


def term_value(term, v: int) -> int:
    """A per-symbol term at the integer size v."""
    if not isinstance(term[0], str):
        a, c = term
        return v**a * ilog2_ceil(v) ** c
    if term[0] in LOG_KINDS:
        inner = inner_value(term, v)
        return ilog2_ceil(inner) if inner > 0 else 0
    out = 1
    for atom in term[1]:
        out *= atom_value(atom, v)
    return out


def inner_value(term, v: int) -> int | None:
    """u(v) for a logarithmic term ceil(log2 u(v)) (None for other terms)."""
    if term == (0, 1):
        return v
    if term[0] == "log-div":
        return atom_value(term[1], v)
    if term[0] == "log-sq":
        return atom_value(term[1], v) ** 2
    return None


def basis_value(basis_term: dict, sizes: dict[str, int]) -> Fraction:
    out = 1
    for name, term in basis_term.items():
        if name == LOG_OF:
            prod = 1
            for n, inner in term:
                prod *= inner_value(inner, sizes[n])
            out *= ilog2_ceil(prod) if prod > 0 else 0
        else:
            out *= term_value(term, sizes[name])
    return Fraction(out)


def atom_expr(atom: tuple, s: sympy.Symbol) -> sympy.Expr:
    k, r = atom
    if k == 0:
        return s + r
    if r == (1 << k) - 1:
        return sympy.ceiling(s / 2**k)
    return sympy.floor((s + r) / sympy.Integer(2**k))


def term_expr(term, s: sympy.Symbol) -> sympy.Expr:
    if not isinstance(term[0], str):
        a, c = term
        return s**a * clog2(s) ** c
    if term[0] in LOG_KINDS:
        return clog2(_inner_expr(term, s))
    return sympy.Mul(*[atom_expr(a, s) for a in term[1]])


def _inner_expr(term, s: sympy.Symbol) -> sympy.Expr:
    if term == (0, 1):
        return s
    return atom_expr(term[1], s) ** (2 if term[0] == "log-sq" else 1)


def basis_expr(basis_term: dict) -> sympy.Expr:
    out = sympy.S.One
    for name, term in basis_term.items():
        if name == LOG_OF:
            out *= clog2(sympy.Mul(*[_inner_expr(inner, size_symbol(n)) for n, inner in term]))
        else:
            out *= term_expr(term, size_symbol(name))
    return out


def to_expr(basis: list[dict], coeffs: list[Fraction]) -> sympy.Expr:
    """sum(c * basis term) as a sympy expression."""
    terms = [sympy.Rational(c.numerator, c.denominator) * basis_expr(t) for t, c in zip(basis, coeffs) if c != 0]
    return sympy.expand(sympy.Add(*terms), log=False)


def smooth_equivalent(term):
    """The smooth term a rounded term equals at large powers of two (floor((v + r)/2**k) -> v/2**k)."""
    if not isinstance(term[0], str):
        return term
    if term[0] in LOG_KINDS:
        return (0, 1)
    return (len(term[1]), 0)


def is_rounding(term) -> bool:
    return isinstance(term[0], str)


def switch_sizes(atom: tuple, lo: int, hi: int) -> list[int]:
    """Sizes v in [lo, hi] where the atom is 2**j + 1, then 2**j (where ceil(log2 atom) steps), smallest j first:
    the sizes that tell the logarithms of nearby atoms, and the logarithm of a product from a sum, apart."""
    k, r = atom
    out = []
    j = 0
    while True:
        first = ((1 << j) + 1 << k) - r  # the smallest v with floor((v + r)/2**k) = 2**j + 1
        if first > hi:
            break
        for v in (first, ((1 << j) << k) - r + (1 << k) - 1):  # 2**j + 1 at its smallest, 2**j at its largest
            if lo <= v <= hi and v & (v - 1) and v not in out:
                out.append(v)
        j += 1
    return out


def find_atoms(series: list[tuple[int, int]], levels: int) -> list[tuple]:
    """Every (k, r), k <= levels, such that value = c * floor((v + r)/2**k) + e with c != 0 at every (v, value) of
    a series, smallest k (then r) first; [] when none does (or the series is constant)."""
    if len({y for _, y in series}) < 2:
        return []
    out = []
    for k in range(levels + 1):
        for r in range(1 << k):
            xs = [((v + r) >> k, y) for v, y in series]
            (x0, y0) = xs[0]
            other = next(((x, y) for x, y in xs if x != x0), None)
            if other is None:
                continue
            c = Fraction(other[1] - y0, other[0] - x0)
            if c != 0 and all(Fraction(y - y0) == c * (x - x0) for x, y in xs):
                out.append((k, r))
    return out


# ---------------------------------------------------------------------------------------------
# Exact linear algebra


def independent_columns(rows: list[list[Fraction]]) -> list[int]:
    """Indices of a maximal set of linearly independent columns, earliest first."""
    if not rows:
        return []
    a = [list(r) for r in rows]
    cols, rank = [], 0
    for col in range(len(a[0])):
        pivot = next((r for r in range(rank, len(a)) if a[r][col] != 0), None)
        if pivot is None:
            continue
        a[rank], a[pivot] = a[pivot], a[rank]
        for r in range(len(a)):
            if r != rank and a[r][col] != 0:
                f = a[r][col] / a[rank][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[rank])]
        cols.append(col)
        rank += 1
    return cols


def solve(rows: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction] | None:
    """The solution of rows x = rhs by exact elimination when the columns are independent (None otherwise); rows
    beyond the rank are not checked here (`fits` checks every point)."""
    n = len(rows[0]) if rows else 0
    a = [list(r) + [Fraction(y)] for r, y in zip(rows, rhs)]
    for col in range(n):
        pivot = next((r for r in range(col, len(a)) if a[r][col] != 0), None)
        if pivot is None:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        head = a[col][col]
        a[col] = [x / head for x in a[col]]
        for r in range(len(a)):
            if r != col and a[r][col] != 0:
                f = a[r][col]
                a[r] = [x - f * y for x, y in zip(a[r], a[col])]
    return [a[i][n] for i in range(n)]


def fits(basis: list[dict], points: list[tuple[dict, int]]) -> list[Fraction] | None:
    """Coefficients of `basis` that reproduce every point exactly, or None (also when the points cannot tell the
    basis terms apart)."""
    rows = [[basis_value(t, s) for t in basis] for s, _ in points]
    coeffs = solve(rows, [Fraction(y) for _, y in points])
    if coeffs is None:
        return None
    for row, (_, y) in zip(rows, points):
        if sum(c * x for c, x in zip(coeffs, row)) != y:
            return None
    return coeffs


def sparse_fit(basis: list[dict], points: list[tuple[dict, int]]) -> tuple[list[dict], list[Fraction]] | None:
    """Fit with the columns the points can tell apart (earlier basis terms preferred), then drop zero terms."""
    rows = [[basis_value(t, s) for t in basis] for s, _ in points]
    keep = independent_columns(rows)
    kept = [basis[i] for i in keep]
    coeffs = fits(kept, points)
    if coeffs is None:
        return None
    pairs = [(t, c) for t, c in zip(kept, coeffs) if c != 0]
    return [t for t, _ in pairs], [c for _, c in pairs]
