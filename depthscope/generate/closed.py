"""Sums of a decode step's cost over the cache lengths c = lo..hi: exact closed forms, or a labelled sympy Sum.

Polynomial terms sum with sympy. A depth term ceil(log2(c + k)) sums with the identity

    S(N) = sum_{j=1}^{N} ceil(log2 j) = N*L - 2**L + 1,   L = ceil(log2 N),   N >= 1,

proved by counting, for each j <= N, the levels l = 1..L with 2**(l-1) < j: there are exactly ceil(log2 j) of
them, and level l is counted by the N - 2**(l-1) values j above 2**(l-1), so the sum is sum_l (N - 2**(l-1)) =
N*L - (2**L - 1). A depth that is the Max of several paths sums exactly when one path is longest at every c in
range (proved below, `dominant_form`); otherwise the Max stays inside an unevaluated Sum, which `evaluate_sums`
adds up exactly at concrete sizes, block by block between the powers of two where its terms change.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy

from depthscope.complexity import big_o
from depthscope.engine.paths import forms_of, to_expr
from depthscope.errors import InputError
from depthscope.symbols import ONE, as_expr, clog2, evaluate, ilog2_ceil, is_clog2

MAX_TERMS = 20_000  # a Sum whose terms change at every c is added term by term up to this many terms
MAX_BRUTE = 1 << 20  # cache lengths checked one by one when a dominance proof needs them


@dataclass(frozen=True)
class StepSum:
    """sum_{c=lo}^{hi} of a step metric: `expr` is exact; `closed` is False when part of it is a sympy Sum."""

    expr: sympy.Expr
    closed: bool = True
    reason: str | None = None  # why a part stays a Sum


def clog2_prefix(total) -> sympy.Expr:
    """sum_{j=1}^{N} ceil(log2 j) for N >= 1, as N*L - 2**L + 1 with L = ceil(log2 N)."""
    total = as_expr(total)
    level = clog2(total)
    return sympy.expand(total * level) - sympy.Integer(2) ** level + 1


def _smallest(expr, mins: dict) -> sympy.Expr:
    """expr at every symbol's minimum (the sum's bounds are nondecreasing in each size)."""
    return sympy.expand(as_expr(expr).xreplace({s: sympy.Integer(mins.get(s, 1)) for s in as_expr(expr).free_symbols}))


def _log_offset(atom, c) -> int | None:
    """k for ceil(log2(c + k)) with an integer k, else None."""
    if not is_clog2(atom):
        return None
    arg = sympy.expand(sympy.Mul(*[a for a in atom.args[0].args if isinstance(a, sympy.log)]).args[0])
    rest = sympy.expand(arg - c)
    return int(rest) if rest.is_Integer else None


def sum_steps(expr, c: sympy.Symbol, lo, hi, mins: dict, c_range: tuple[int, int | None]) -> StepSum:
    """sum_{c=lo}^{hi} expr, exact: closed where the terms allow, the rest as sympy.Sum (with the reason).

    `mins` gives each size's minimum (for the identity's N >= 1), `c_range` the range of c the step was captured
    over (for proving which of several paths is longest)."""
    expr, lo, hi = as_expr(expr), as_expr(lo), as_expr(hi)
    count = sympy.expand(hi - lo + 1)
    if c not in expr.free_symbols:
        return StepSum(sympy.expand(expr * count))
    reason = None
    if expr.has(sympy.Max):
        forms = forms_of(expr)
        best = dominant_form(forms, c, *c_range) if len(forms) > 1 else forms[0]
        if best is None:
            reason = (f"the step's depth is the Max of {len(forms)} paths and none is the longest at every c, so "
                      "its sum is kept as a Sum (exact; evaluated block by block at concrete sizes)")
            return StepSum(sympy.Sum(expr, (c, lo, hi)), False, reason)
        expr = to_expr(best)
    closed, left = [], []
    for term in sympy.Add.make_args(sympy.expand(expr)):
        coeff, dep = term.as_independent(c, as_Add=False)
        k = _log_offset(dep, c)
        if k is not None and _smallest(lo + k - 1, mins) >= 1:
            closed.append(coeff * (clog2_prefix(hi + k) - clog2_prefix(lo + k - 1)))
        elif dep.is_polynomial(c) and not dep.has(sympy.ceiling, sympy.floor, sympy.Max, sympy.Min, sympy.Mod,
                                                  sympy.log):
            closed.append(sympy.expand(sympy.summation(term, (c, lo, hi))))
        else:
            left.append(term)
    total = sympy.Add(*closed)
    if left:
        reason = (f"{len(left)} term(s) of the step ({', '.join(str(t) for t in left[:3])}) have no closed-form "
                  "sum here, so they are kept as a Sum (exact; evaluated at concrete sizes)")
        return StepSum(total + sympy.Sum(sympy.Add(*left), (c, lo, hi)), False, reason)
    return StepSum(total)


# ---------------------------------------------------------------------------------------------
# Which of several depth paths is longest at every cache length


def _difference(a: tuple, b: tuple) -> dict:
    out: dict = {}
    for atom, coeff in a:
        out[atom] = out.get(atom, 0) + coeff
    for atom, coeff in b:
        out[atom] = out.get(atom, 0) - coeff
    return {atom: coeff for atom, coeff in out.items() if coeff != 0}


def _nonnegative(diff: dict, c, c_min: int, c_max: int | None) -> bool:
    """Prove sum_i a_i ceil(log2(c + k_i)) + a_0 >= 0 for every integer c in [c_min, c_max].

    For l with 2**(l-1) > 2K (K = max |k_i|) and c in W_l = [2**l - K, 2**(l+1) - K), ceil(log2(c + k_i)) = l +
    [c - 2**l > -k_i], so the values on W_l are (sum a_i) l + a_0 + p(c - 2**l) with p the same for every l: they
    only grow with l when sum a_i >= 0. Checking every c up to the end of one such window proves all c beyond."""
    const = Fraction(diff.pop(ONE, 0))
    offsets = []
    for atom, coeff in diff.items():
        k = _log_offset(atom, c)
        if k is None:
            return False  # an atom in another size or of another kind: not proved
        offsets.append((Fraction(coeff), k))

    def value(x: int) -> Fraction:
        return const + sum(a * ilog2_ceil(x + k) for a, k in offsets)

    if c_max is not None and c_max - c_min <= MAX_BRUTE:
        return all(value(x) >= 0 for x in range(c_min, c_max + 1))
    if sum(a for a, _ in offsets) < 0:
        return False  # falls without bound as c grows
    spread = max((abs(k) for _, k in offsets), default=0)
    level = max(2, (4 * spread + 1).bit_length() + 1, c_min.bit_length() + 1)
    top = 2 ** (level + 1)
    if top - c_min > MAX_BRUTE:
        return False
    return all(value(x) >= 0 for x in range(c_min, top + 1))


def dominant_form(forms, c, c_min: int, c_max: int | None):
    """The path form that is at least every other at each c in range (proved exactly), else None."""
    for form in forms:
        if all(other is form or _nonnegative(_difference(form, other), c, c_min, c_max) for other in forms):
            return form
    return None


# ---------------------------------------------------------------------------------------------
# Concrete values of sums that stay Sums


def _breaks(body, c, lo: int, hi: int) -> list[int] | None:
    """The c in (lo, hi] where a term of body changes, when body depends on c only through ceil(log2(c + k))."""
    atoms = [a for a in body.atoms(sympy.ceiling) if c in a.free_symbols]
    offsets = [_log_offset(a, c) for a in atoms]
    held = sympy.Dummy("level")  # the atoms held at one value: is c left anywhere else?
    if any(k is None for k in offsets) or c in body.xreplace({a: held for a in atoms}).free_symbols:
        return None
    points = set()
    for k in offsets:
        level = max(0, ilog2_ceil(max(lo + k, 1)) - 1)
        while 2**level + 1 - k <= hi:
            start = 2**level + 1 - k  # ceil(log2(c + k)) steps up where c + k passes 2**level + 1
            if start > lo:
                points.add(start)
            level += 1
    return sorted(points)


def _sum_concrete(body, c, lo: int, hi: int) -> sympy.Expr:
    if hi < lo:
        return sympy.S.Zero
    points = _breaks(body, c, lo, hi)
    if points is not None:
        total, starts = sympy.S.Zero, [lo] + points + [hi + 1]
        for a, b in zip(starts, starts[1:]):
            total += evaluate(body, {c: a}) * (b - a)
        return total
    if hi - lo + 1 > MAX_TERMS:
        raise InputError(f"the generation sum has {hi - lo + 1} terms that change at every step, more than "
                         f"{MAX_TERMS} to add one by one; ask for a smaller T")
    return sympy.Add(*[evaluate(body, {c: x}) for x in range(lo, hi + 1)])


def evaluate_sums(expr, values: dict) -> sympy.Expr:
    """expr at concrete sizes (symbol -> int), every Sum in it added up exactly."""
    expr = as_expr(expr)
    for s in expr.atoms(sympy.Sum):
        body, (var, lo, hi) = s.function, s.limits[0]
        body = evaluate(body, {k: v for k, v in values.items() if k != var})
        total = _sum_concrete(body, var, int(evaluate(lo, values)), int(evaluate(hi, values)))
        expr = expr.xreplace({s: total})
    return evaluate(expr, values)


def summed_big_o(first, step, c, n, steps):
    """The class of first + sum_{i < steps} step(c = n + i): that of first + steps * step(c = n + steps).

    For a step cost that does not fall as c grows and grows at most polynomially (f(2x) <= K f(x)), the sum lies
    between (steps/2) f(n + steps/2) and steps * f(n + steps): within constant factors of steps * f(n + steps)."""
    return big_o(as_expr(first) + steps * as_expr(step).xreplace({c: n + steps}))


__all__ = ["StepSum", "clog2_prefix", "dominant_form", "evaluate_sums", "sum_steps", "summed_big_o"]
