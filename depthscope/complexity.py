"""Big-O complexity classes: a sum of dominant terms, each a product of size**p * log(size)**q, and dominance.

A term is a product of ``size**p * log(size)**q`` (p and q rational) times opaque factors (only from model
formulas); a class is a set of terms reduced to those no other term dominates. Term a dominates term b when,
in every size symbol, a's (power, log power) is at least b's (power first, then log power), and b has no
opaque factor a does not share. A size missing from a term counts as power 0 there; sizes are at least 1.
The constant 1 is the empty term, so it dominates every term that falls in each of its sizes (1/n, log(n)/n)
but not a mixed one such as n/m; n dominates n/m.

Class A is within class B when every term of A is dominated by some term of B: that is how `depthscope check`
compares a model with its budget (see depthscope/check/budget.py for the budget grammar) or its lock.

This module imports neither sympy nor torch when it is imported, so a warm `depthscope check` stays fast;
``Class.to_sympy``, ``class_of_expr`` and ``big_o`` import sympy when called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from depthscope.errors import BudgetError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


Factor = tuple  # (name, power: Fraction, log power: Fraction)


@dataclass(frozen=True)
class Term:
    """prod(name**power * log(name)**logpower) times opaque factors (only from model formulas); () is O(1)."""

    factors: tuple[Factor, ...] = ()
    opaque: tuple[str, ...] = ()

    def exponents(self, name: str) -> tuple[Fraction, Fraction]:
        for n, p, q in self.factors:
            if n == name:
                return p, q
        return Fraction(0), Fraction(0)

    @property
    def names(self) -> set[str]:
        return {n for n, _, _ in self.factors}

    def dominates(self, other: "Term") -> bool:
        """self grows at least as fast as other in every size (power first, then log power)."""
        if other.opaque and other.opaque != self.opaque:
            return False
        return all(self.exponents(n) >= other.exponents(n) for n in self.names | other.names)

    def times(self, other: "Term") -> "Term":
        powers: dict[str, list[Fraction]] = {}
        for n, p, q in self.factors + other.factors:
            e = powers.setdefault(n, [Fraction(0), Fraction(0)])
            e[0] += p
            e[1] += q
        return _term(powers, tuple(sorted(self.opaque + other.opaque)))

    def scaled(self, k: Fraction) -> "Term":
        return Term(tuple((n, p * k, q * k) for n, p, q in self.factors), self.opaque)

    def text(self) -> str:
        num, den = [], []
        for n, p, q in self.factors:
            for base, e in ((n, p), (f"log({n})", q)):
                if e > 0:
                    num.append(base + _exponent_text(e))
                elif e < 0:
                    den.append(base + _exponent_text(-e))
        num += list(self.opaque)
        out = "*".join(num) or "1"
        if den:
            out += "/" + (den[0] if len(den) == 1 else "(" + "*".join(den) + ")")
        return out

    def to_json(self) -> dict:
        """{"n": [2, 1]} for n**2*log(n): integer exponents as numbers, others as "p/q"; opaque factors under "?"."""
        out: dict = {n: [_json_number(p), _json_number(q)] for n, p, q in self.factors}
        if self.opaque:
            out["?"] = list(self.opaque)
        return out

    def _order(self):
        degree = sum(p for _, p, _ in self.factors)
        logs = sum(q for _, _, q in self.factors)
        return (-degree, -logs, -len(self.opaque), self.text())


def _term(powers: dict[str, list[Fraction]], opaque: tuple[str, ...] = ()) -> Term:
    return Term(tuple(sorted((n, p, q) for n, (p, q) in powers.items() if p or q)), opaque)


def _json_number(e: Fraction):
    return e.numerator if e.denominator == 1 else str(e)


def _read_exponent(x, where: str) -> Fraction:
    if isinstance(x, bool) or not isinstance(x, (int, str)):
        raise BudgetError(f"{where}: malformed exponent {x!r}")
    try:
        e = Fraction(x)
    except (ValueError, ZeroDivisionError):
        raise BudgetError(f"{where}: malformed exponent {x!r}") from None
    if abs(e.numerator) > 10**6 or e.denominator > 10**6:
        raise BudgetError(f"{where}: exponent {x!r} out of range")
    return e


def _exponent_text(e: Fraction) -> str:
    if e == 1:
        return ""
    return f"**{e}" if e.denominator == 1 else f"**({e})"


def reduce_terms(terms) -> tuple[Term, ...]:
    """The terms no other term dominates (one of each equal pair), in a stable display order.

    A dominating term has at least the total power (and, at equal power, the total log power) of the term it
    dominates, so after sorting by those a single pass against the kept terms suffices.
    """
    kept: list[Term] = []
    for t in sorted(set(terms), key=Term._order):
        if not any(k.dominates(t) for k in kept):
            kept.append(t)
    return tuple(kept)


@dataclass(frozen=True)
class Class:
    """A big-O class: a sum of dominant terms. Empty means zero."""

    terms: tuple[Term, ...]

    @classmethod
    def of(cls, terms) -> "Class":
        return cls(reduce_terms(terms))

    def text(self) -> str:
        return " + ".join(t.text() for t in self.terms) if self.terms else "0"

    def __str__(self) -> str:
        return self.text()

    def big_o(self) -> str:
        return f"O({self.text()})"

    @property
    def names(self) -> set[str]:
        return {n for t in self.terms for n in t.names}

    def excess(self, budget: "Class") -> list[Term]:
        """The terms of self that no term of `budget` dominates (empty: self is within budget)."""
        return [t for t in self.terms if not any(b.dominates(t) for b in budget.terms)]

    def within(self, budget: "Class") -> bool:
        return not self.excess(budget)

    def same_as(self, other: "Class") -> bool:
        return self.within(other) and other.within(self)

    def to_json(self) -> list:
        return [t.to_json() for t in self.terms]

    @classmethod
    def from_json(cls, data, where: str = "class") -> "Class":
        """Read back `to_json` output (e.g. from the lock file), validating every piece."""
        if not isinstance(data, list) or len(data) > 1000:
            raise BudgetError(f"{where}: expected a list of terms")
        terms = []
        for item in data:
            if not isinstance(item, dict):
                raise BudgetError(f"{where}: malformed term {item!r}")
            powers: dict[str, list[Fraction]] = {}
            opaque = item.get("?", [])
            if not isinstance(opaque, list) or not all(isinstance(x, str) for x in opaque):
                raise BudgetError(f"{where}: malformed term {item!r}")
            for name, pq in item.items():
                if name == "?":
                    continue
                if not (isinstance(name, str) and _NAME.fullmatch(name) and isinstance(pq, list) and len(pq) == 2):
                    raise BudgetError(f"{where}: malformed factor {name!r}: {pq!r}")
                powers[name] = [_read_exponent(x, where) for x in pq]
            terms.append(_term(powers, tuple(sorted(opaque))))
        return cls.of(terms)

    def to_sympy(self):
        """The class as a sympy expression over depthscope's size symbols (built term by term, never parsed)."""
        import sympy

        from depthscope.symbols import size_symbol

        out = []
        for t in self.terms:
            factors = []
            for n, p, q in t.factors:
                s = size_symbol(n)
                factors.append(s ** sympy.Rational(p.numerator, p.denominator))
                factors.append(sympy.log(s) ** sympy.Rational(q.numerator, q.denominator))
            if t.opaque:
                raise BudgetError(f"the term {t.text()} has factors outside the budget grammar")
            out.append(sympy.Mul(*factors))
        return sympy.Add(*out)


ONE = Class((Term(),))
ZERO = Class(())


# ---------------------------------------------------------------------------------------------
# sympy expressions (a Report's work, depth, ...) -> classes, and back


def class_of_expr(expr) -> Class:
    """The big-O class of a sympy expression (e.g. a Report's work or depth): its dominant terms."""
    return _classify(expr)[0]


def big_o(expr):
    """The dominant terms of expr as a sympy expression, coefficients dropped ("1" when constant).

    Sizes keep the symbols of expr; factors outside the class grammar (exp(n), n**k, ...) stay as they are.
    """
    import sympy

    cls, symbols, opaque = _classify(expr)
    out = []
    for t in cls.terms:
        factors = []
        for name, p, q in t.factors:
            s = symbols[name]
            factors.append(s ** sympy.Rational(p.numerator, p.denominator))
            factors.append(sympy.log(s) ** sympy.Rational(q.numerator, q.denominator))
        factors += [opaque[o] for o in t.opaque]
        out.append(sympy.Mul(*factors))
    return sympy.Add(*out) if out else sympy.S.One


def _classify(expr):
    """(class, {size name: symbol}, {opaque factor text: factor}) of a sympy expression.

    The expression is loosened (ceiling, floor, Max, Min, Mod and log replaced by what bounds them within a
    constant factor) and expanded; every term with a positive coefficient becomes a Term, a constant term the
    empty Term (O(1)), so that terms that fall with a size (1/n, log(n)/n) are dominated by it.
    """
    import sympy

    from depthscope.symbols import as_expr

    expr = as_expr(expr)
    if expr.is_number:
        return ONE, {}, {}
    symbols: dict = {}
    opaque_factors: dict = {}
    terms = []
    for term in sympy.Add.make_args(sympy.expand(_loosen(expr))):
        if term.is_number:
            if term.is_positive:
                terms.append(Term())
            continue
        coeff, rest = term.as_coeff_Mul()
        if coeff.is_number and coeff.is_negative:
            continue
        powers: dict[str, list[Fraction]] = {}
        opaque = []
        for factor in sympy.Mul.make_args(rest):
            if factor.is_number:
                continue
            base, exp = factor.as_base_exp()
            e = _fraction(exp) if exp.is_number else None
            if e is not None and isinstance(base, sympy.Symbol):
                symbols.setdefault(base.name, base)
                powers.setdefault(base.name, [Fraction(0), Fraction(0)])[0] += e
            elif e is not None and isinstance(base, sympy.log) and isinstance(base.args[0], sympy.Symbol):
                symbols.setdefault(base.args[0].name, base.args[0])
                powers.setdefault(base.args[0].name, [Fraction(0), Fraction(0)])[1] += e
            else:
                opaque_factors.setdefault(str(factor), factor)
                opaque.append(str(factor))
        terms.append(_term(powers, tuple(sorted(opaque))))
    cls = Class.of(terms)
    return (cls if cls.terms else ONE), symbols, opaque_factors


def _loosen(expr):
    """Replace ceiling/floor by their argument, Max by the sum and log2 by log: same big-O class."""
    import sympy

    if not expr.args or expr.is_number:
        return expr  # constants stay: log(2) in ceil(log(n)/log(2)) must not become log(1) = 0
    args = [_loosen(a) for a in expr.args]
    if isinstance(expr, (sympy.ceiling, sympy.floor)):
        return args[0]
    if isinstance(expr, sympy.Max):
        return sympy.Add(*args)
    if isinstance(expr, sympy.Min):
        # min(a, b) <= a: any argument bounds it; take the one with the smallest class.
        classes = sorted(args, key=lambda a: (len(str(big_o(a))), str(a)))
        return classes[0]
    if isinstance(expr, sympy.Mod):
        return args[1]
    if isinstance(expr, sympy.log):
        # log(x) grows as log of x's dominant terms, and log(a + b) is within a factor 2 of log(a) + log(b)
        inner = big_o(args[0])
        return sympy.Add(*[sympy.expand_log(sympy.log(t), force=True) for t in sympy.Add.make_args(inner)])
    return expr.func(*args)


def _fraction(value) -> Fraction | None:
    try:
        if value.is_Rational:
            return Fraction(int(value.p), int(value.q))
        return Fraction(float(value)).limit_denominator(1000)
    except (TypeError, ValueError, OverflowError):
        return None


__all__ = ["Class", "Factor", "ONE", "Term", "ZERO", "big_o", "class_of_expr", "reduce_terms"]
