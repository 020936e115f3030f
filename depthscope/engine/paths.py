"""Longest-path arithmetic on symbolic depths: linear forms over atoms, pruned by provable dominance.

A depth is a sum of nonnegative atoms (1, ceil(log2 n), n, ...) with coefficients. The depth of a node is the
max over its inputs' depths plus its own; instead of nesting sympy Max we keep the set of forms that no other
form provably dominates for every size in the Dims' ranges, so a chain of L layers stays one closed form.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import sympy

from depthscope.symbols import ONE, SymbolInfo, as_expr, clog2, evaluate, is_clog2

Form = dict  # {atom (sympy expr, ONE for the constant): Fraction coefficient}


@functools.lru_cache(maxsize=8192)
def forms_of(expr: sympy.Expr) -> tuple:
    """Split a depth expression into the linear forms whose max it is (Max distributes over +)."""
    expr = as_expr(expr)
    if isinstance(expr, sympy.Max):
        out = []
        for arg in expr.args:
            out.extend(forms_of(arg))
        return tuple(out)
    if isinstance(expr, sympy.Add):
        acc = [{}]
        for term in expr.args:
            acc = [_add(a, f) for a in acc for f in forms_of(term)]
        return tuple(_freeze(a) for a in acc)
    coeff, rest = expr.as_coeff_Mul()
    if isinstance(rest, sympy.Max) and coeff.is_number and coeff > 0:
        return tuple(_freeze(_scale(f, coeff)) for f in forms_of(rest))
    if expr.is_number:
        return (_freeze({ONE: Fraction(str(expr)) if not expr.is_Integer else Fraction(int(expr))}),) if expr != 0 else (_freeze({}),)
    c = Fraction(int(coeff)) if coeff.is_Integer else Fraction(str(sympy.nsimplify(coeff)))
    return (_freeze({rest: c}),)


def _freeze(form: dict) -> tuple:
    return tuple(sorted(((a, c) for a, c in form.items() if c != 0), key=lambda ac: sympy.default_sort_key(ac[0])))


def _add(a: dict, frozen: tuple) -> dict:
    out = dict(a)
    for atom, c in frozen:
        out[atom] = out.get(atom, 0) + c
    return out


def _scale(form: tuple, coeff) -> dict:
    factor = Fraction(str(coeff))
    return {a: c * factor for a, c in form}


def add_forms(a: tuple, b: tuple) -> tuple:
    if not a:
        return b
    if not b:
        return a
    return _freeze(_add(dict(a), b))


def to_expr(form: tuple) -> sympy.Expr:
    return sympy.Add(*[sympy.Rational(c.numerator, c.denominator) * atom for atom, c in form])


class Dominance:
    """Decides `a >= b for every size in range`, soundly: True only when proved."""

    def __init__(self, symbols: dict[str, SymbolInfo]):
        self.symbols = symbols
        self._lo = {s.symbol: s.min for s in symbols.values()}
        self._hi = {s.symbol: s.max for s in symbols.values()}
        self._bounds: dict = {}
        self._geq: dict = {}

    def bounds(self, atom) -> tuple[float, float]:
        hit = self._bounds.get(atom)
        if hit is None:
            hit = (self._value(atom, self._lo, low=True), self._value(atom, self._hi, low=False))
            self._bounds[atom] = hit
        return hit

    def _value(self, atom, sizes, low: bool) -> float:
        """Atoms are nondecreasing in every size, so the range's ends bound them."""
        free = atom.free_symbols
        if not free:
            return float(evaluate(atom, {}))
        if any(s not in sizes or sizes[s] is None for s in free):
            return 0.0 if low else math.inf
        return float(evaluate(atom, {s: sizes[s] for s in free}))

    def atom_geq(self, a, b) -> bool:
        """a >= b for all sizes when a's argument is b's times a monomial (ceil(log2 bn) >= ceil(log2 n))."""
        if a == b:
            return True
        key = (a, b)
        hit = self._geq.get(key)
        if hit is None:
            hit = False
            if is_clog2(a) and is_clog2(b):
                hit = _monomial_ratio(_clog2_arg(a), _clog2_arg(b))
            elif not a.has(sympy.ceiling, sympy.floor, sympy.log) and not b.has(sympy.ceiling, sympy.floor, sympy.log):
                hit = _monomial_ratio(a, b)
            self._geq[key] = hit
        return hit

    def dominates(self, a: tuple, b: tuple) -> bool:
        """Prove a - b >= 0: cancel each negative atom against larger positive atoms, split ceil(log2(x*y))
        into ceil(log2 x) + ceil(log2 y) (an upper bound), and bound what is left by the Dims' ranges."""
        diff = dict(a)
        for atom, c in b:
            diff[atom] = diff.get(atom, 0) - c
        lower = Fraction(diff.pop(ONE, 0))
        pos = {k: v for k, v in diff.items() if v > 0}
        negative = [(atom, -c) for atom, c in diff.items() if c < 0]
        while negative:
            atom, need = negative.pop()
            for p in list(pos):
                if need == 0:
                    break
                if pos[p] > 0 and self.atom_geq(p, atom):
                    use = min(need, pos[p])
                    pos[p] -= use
                    need -= use
            if not need:
                continue
            parts = _split_clog2(atom)
            if parts is not None:
                const, factors = parts
                lower -= need * const
                negative.extend((f, need) for f in factors)
                continue
            hi = self.bounds(atom)[1]
            if hi == math.inf:
                return False
            lower -= need * Fraction(hi)
        for atom, c in pos.items():
            lower += c * Fraction(self.bounds(atom)[0])
        return lower >= 0


@functools.lru_cache(maxsize=4096)
def _split_clog2(atom):
    """ceil(log2(c*x*y)) <= ceil(log2 c) + ceil(log2 x) + ceil(log2 y): (constant, factor atoms), or None."""
    if not is_clog2(atom):
        return None
    factors = [f for f in sympy.Mul.make_args(_clog2_arg(atom)) if not f.is_number]
    coeff = sympy.Mul(*[f for f in sympy.Mul.make_args(_clog2_arg(atom)) if f.is_number])
    if len(factors) < 2 and coeff == 1:
        return None
    const = int(clog2(coeff)) if coeff.is_Integer else None
    if const is None:
        return None
    return Fraction(const), [clog2(f) for f in factors if clog2(f) != 0]


def _clog2_arg(atom):
    """x in ceiling(log(x)/log(2))."""
    inner = atom.args[0]
    for f in sympy.Mul.make_args(inner):
        if isinstance(f, sympy.log):
            return f.args[0]
    return inner


def _monomial_ratio(a, b) -> bool:
    """True when a / b is a product of positive sizes with a coefficient >= 1 (so a >= b for sizes >= 1)."""
    ratio = sympy.cancel(a / b)
    coeff, rest = ratio.as_coeff_Mul()
    if not (coeff.is_number and coeff >= 1):
        return False
    for f in sympy.Mul.make_args(rest):
        base, exp = f.as_base_exp()
        if not (isinstance(base, sympy.Symbol) and base.is_positive and exp.is_Integer and exp > 0):
            if not f.is_number:
                return False
    return True


def prune(entries: list, dom: Dominance) -> list:
    """Keep the entries whose form no other entry's form dominates (ties keep the first)."""
    if len(entries) <= 1:
        return entries
    unique = []
    seen = set()
    for e in entries:
        if id(e) in seen:
            continue
        seen.add(id(e))
        unique.append(e)
    kept = []
    for i, e in enumerate(unique):
        dominated = False
        for j, other in enumerate(unique):
            if i == j:
                continue
            if other.form == e.form:
                if j < i:
                    dominated = True
                    break
                continue
            if dom.dominates(other.form, e.form):
                dominated = True
                break
        if not dominated:
            kept.append(e)
    return kept


class Entry:
    """One candidate longest path ending at a node: its depth form, the node, its own step and the previous entry."""

    __slots__ = ("form", "node", "own", "prev")

    def __init__(self, form, node=None, own=(), prev=None):
        self.form = form
        self.node = node
        self.own = own
        self.prev = prev

    def chain(self) -> list:
        out = []
        e = self
        while e is not None and e.node is not None:
            out.append(e)
            e = e.prev
        return out[::-1]


ROOT = Entry(())
