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
    """Split a depth expression into the linear forms whose max it is (Max distributes over +).

    Atoms are canonical (`canonical_atom`): ceil(log2(b*(x + 1))) and ceil(log2(b*x + b)) are one atom, so
    forms built by different rules compare."""
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
    if isinstance(rest, sympy.Mul) and any(isinstance(f, sympy.Add) for f in rest.args) and not rest.has(sympy.Max):
        return forms_of(sympy.expand(expr))  # n*(H + 1) is the two atoms n*H and n
    c = Fraction(int(coeff)) if coeff.is_Integer else Fraction(str(sympy.nsimplify(coeff)))
    return (_freeze({canonical_atom(rest): c}),)


@functools.lru_cache(maxsize=None)
def canonical_atom(atom: sympy.Expr) -> sympy.Expr:
    """One representative per value: ceil(log2 x) with x factored (expanded first, so that equal arguments
    written differently meet), other atoms as they are. A deterministic function of the atom's value, not of
    the order atoms are met in."""
    if not is_clog2(atom):
        return atom
    arg = _clog2_arg(atom)
    expanded = sympy.expand(arg)
    if not isinstance(expanded, sympy.Add):
        return atom if expanded == arg else sympy.ceiling(sympy.log(expanded) / _LOG2)
    return sympy.ceiling(sympy.log(sympy.factor(expanded)) / _LOG2)


_LOG2 = sympy.log(2)
_ATOM_ORDER: dict = {}


def _atom_key(item) -> int:
    """Forms are tuples sorted by atom; the order is the order atoms were first met (cheap, and only used to
    make equal forms equal tuples)."""
    atom = item[0]
    key = _ATOM_ORDER.get(atom)
    if key is None:
        key = _ATOM_ORDER[atom] = len(_ATOM_ORDER)
    return key


def _freeze(form: dict) -> tuple:
    return tuple(sorted(((a, c) for a, c in form.items() if c != 0), key=_atom_key))


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
        self._proved: dict = {}  # frozen difference -> proved >= 0
        self._pairs: dict = {}  # (difference, difference) -> dominated by the max of the pair

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
        """Prove a - b >= 0 for every size in range (memoised on a - b, which adding the same step to both
        forms leaves unchanged, so a chain of layers asks the same questions)."""
        return self.nonnegative(_difference(a, b))

    def dominated_by_pair(self, f: tuple, g: tuple, h: tuple) -> bool:
        """Prove f <= max(g, h): f <= l*g + (1 - l)*h for some 0 < l < 1, which is at most max(g, h).

        Middle paths (k*A + c - 8*k for k between two others) are on no size's critical path alone; this keeps
        a chain of stages that each offer a choice of such paths from multiplying them. l is tried at the
        values that cancel one atom of the two differences."""
        d1, d2 = _difference(g, f), _difference(h, f)
        key = (d1, d2) if hash(d1) <= hash(d2) else (d2, d1)
        hit = self._pairs.get(key)
        if hit is not None:
            return hit
        one, two = dict(d1), dict(d2)
        lambdas = set()
        for atom in set(one) | set(two):
            x, y = one.get(atom, 0), two.get(atom, 0)
            if (x < 0 < y) or (y < 0 < x):
                lam = Fraction(y) / (Fraction(y) - Fraction(x))
                if 0 < lam < 1:
                    lambdas.add(lam)
        hit = False
        for lam in sorted(lambdas)[:4]:
            combo = {a: lam * one.get(a, 0) + (1 - lam) * two.get(a, 0) for a in set(one) | set(two)}
            if self.nonnegative(_freeze(combo)):
                hit = True
                break
        self._pairs[key] = hit
        return hit

    def nonnegative(self, diff: tuple) -> bool:
        """Prove a linear form (a difference of depths, as a frozen tuple) >= 0 for every size in range."""
        hit = self._proved.get(diff)
        if hit is None:
            hit = self._proved[diff] = self._prove(diff)
        return hit

    def _prove(self, frozen: tuple) -> bool:
        """Cancel each negative atom against larger positive atoms, split ceil(log2(x*y)) into ceil(log2 x) +
        ceil(log2 y) (an upper bound), and bound what is left by the Dims' ranges."""
        diff = dict(frozen)
        lower = Fraction(diff.pop(ONE, 0))
        pos = {k: v for k, v in diff.items() if v > 0}
        negative = [(atom, -c) for atom, c in diff.items() if c < 0]
        if not negative and lower >= 0:
            return True
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


def _difference(a: tuple, b: tuple) -> tuple:
    """a - b as a frozen form."""
    diff = dict(a)
    for atom, c in b:
        diff[atom] = diff.get(atom, 0) - c
    return _freeze(diff)


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


HULL_AT = 3  # frontiers larger than this also drop the paths that are at most the max of two others


def prune(entries: list, dom: Dominance) -> list:
    """Keep the entries whose form no other entry's form dominates (ties keep the first), nor the max of two others."""
    if len(entries) <= 1:
        return entries
    kept: list = []
    for e in entries:
        kept = _insert(kept, e, dom)
    return kept


def merge(groups: list, dom: Dominance) -> list:
    """The union of frontiers that are each pruned already: entries are compared across groups only.

    Groups that are the same list (two inputs of a node reached by the same paths) count once."""
    distinct, seen = [], set()
    for g in groups:
        if id(g) not in seen and g:
            seen.add(id(g))
            distinct.append(g)
    if not distinct:
        return []
    kept = distinct[0]
    for group in distinct[1:]:
        members = {id(e) for e in kept}
        forms = {e.form for e in kept}
        for e in group:
            if id(e) not in members and e.form not in forms:
                kept = _insert(kept, e, dom)
                forms.add(e.form)
    return kept


def _insert(kept: list, e, dom: Dominance) -> list:
    """kept (pruned) plus e, pruned again: e is dropped when kept covers it (one entry, or two once the
    frontier is larger than HULL_AT); kept entries that e (with another) covers are dropped."""
    f = e.form
    for k in kept:
        if k.form == f or dom.dominates(k.form, f):
            return kept
    survivors = [k for k in kept if not dom.dominates(f, k.form)]
    if len(survivors) >= HULL_AT:
        n = len(survivors)
        for i in range(n):
            for j in range(i + 1, n):
                if dom.dominated_by_pair(f, survivors[i].form, survivors[j].form):
                    return survivors if len(survivors) != len(kept) else kept
        i = 0
        while i < len(survivors):  # one at a time: what covers a dropped entry stays
            k = survivors[i]
            if any(dom.dominated_by_pair(k.form, f, o.form) for o in survivors if o is not k):
                survivors.pop(i)
            else:
                i += 1
    survivors.append(e)
    return survivors


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
