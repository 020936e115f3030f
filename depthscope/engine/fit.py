"""Sweep and fit: exact counts at chosen sizes, fitted exactly as sums of terms that are integers at every size.

One loop serves both fitted engines: fitted Dims (the whole count is one coefficient) and fitted hyperparameters
(each coefficient of a formula that is symbolic in the Dims). Per symbol, the smallest set of terms that reproduces
a one-dimensional sweep is chosen: first v**a * ceil(log2 v)**c from powers of two, confirmed at sizes between them;
where those disagree (strided convolutions and poolings make ceil(v/2**k) and floor(v/2**k) sizes), the floor and
ceiling terms of engine/terms.py are fitted from sizes between powers of two. Then the products of those terms (and
the logarithm of products, for a reduction over sizes of several symbols) are solved jointly on a grid, in rational
arithmetic, and checked at held-out sizes: the top power of two of each symbol, and sizes between powers of two
that no fit used, each symbol alone and all together. A formula that is not an integer at an integer size, or that
misses a held-out size, makes the result approximate, as does a metric that only powers of two could fit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import sympy

from depthscope.engine.fitting import (CANDIDATES, MAX_TERMS, SHAPES, FitState, OutOfExactTime,  # noqa: F401
                                       detect_terms)
from depthscope.engine.terms import fits, is_rounding  # noqa: F401 - fits: the fit's exact solve, for callers
from depthscope.errors import InputError
from depthscope.symbols import evaluate, size_symbol

METRICS = ("work", "depth", "flops", "bytes", "bytes_fused", "io")  # what the fitted engines fit, each exactly
Coefficients = dict  # {monomial in the exact symbols (1 for a plain count): Fraction}
Measure = Callable[[dict], dict]  # sizes -> {metric: Coefficients}


@dataclass(frozen=True)
class Fitted:
    """Fitted formulas per metric, the sizes that chose and solved them, and the held-out check."""

    formulas: dict
    sizes: tuple
    heldout: tuple
    heldout_passed: bool
    failures: tuple  # (sizes, metric, fitted value, measured value or None: not an integer)
    notes: tuple = ()  # why a metric is approximate although no held-out size disagreed

    @property
    def exact(self) -> bool:
        return self.heldout_passed and not self.notes


class TimeUp(InputError):
    """The sweep's time budget ran out."""


class Sweep:
    """Measures at sizes once each (a dict from sizes to coefficients), within a time budget."""

    def __init__(self, measure: Measure, deadline: float, what: str):
        self.measure, self.deadline, self.what = measure, deadline, what
        self.budget = max(0.0, deadline - time.perf_counter())
        self.cache: dict = {}
        self.failed: dict = {}
        self.seconds = 0.0

    def at(self, sizes: dict) -> dict:
        key = tuple(sorted(sizes.items()))
        if key in self.failed:
            raise self.failed[key]
        if key not in self.cache:
            if time.perf_counter() > self.deadline:
                raise TimeUp(f"the {self.what} ran out of time before the sweep finished")
            start = time.perf_counter()
            try:
                self.cache[key] = self.measure(dict(sizes))
            except TimeUp:
                raise
            except InputError as exc:
                self.failed[key] = exc
                raise
            finally:
                self.seconds += time.perf_counter() - start
        return self.cache[key]

    def try_at(self, sizes: dict) -> dict | None:
        """at(sizes), or None when the model cannot be analysed there (a size its code rejects)."""
        try:
            return self.at(sizes)
        except TimeUp:
            raise
        except InputError:
            return None

    def mean_seconds(self) -> float:
        return self.seconds / max(1, len(self.cache))

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def fit_sweep(names: list[str], ladders: dict[str, list[int]], base: dict[str, int], sweep: Sweep,
              describe: Callable[[str, object], str], between: dict[str, list[int]] | None = None,
              rounding: bool = True) -> Fitted:
    """Fit every metric in `names` over their ladders (the top rung of each is held out).

    `between[name]`: sizes that are not powers of two, in order of preference, to confirm the fit between powers
    of two (and, with `rounding`, to fit floor/ceiling terms); the first that no fit used are held out.
    Each name is swept alone with the others at `base`; the chosen terms are then solved jointly on a grid.
    `describe(metric, monomial)` names what failed to fit in the error message.
    """
    state = FitState(names, ladders, base, sweep, describe, between, rounding)
    formulas: dict = {}
    for metric in METRICS:
        per_name = {name: state.symbol_terms(metric, name) for name in names}
        exact = rounding and any(is_rounding(t) or t == (0, 1) for ts in per_name.values() for t in ts)
        try:
            formula = state.joint(metric, per_name, exact) if exact else None
        except OutOfExactTime:
            formula = None
            state.notes.append(f"the time budget ran out while fitting the {metric} jointly between powers of two; "
                               "it is fitted at powers of two only")
        if formula is None and exact and not any(metric in note for note in state.notes):
            state.notes.append(f"no exact joint fit of the {metric} in {', '.join(names)} between powers of two "
                               "(floor/ceiling and logarithm-of-product terms tried); it is fitted at powers of two only")
        formulas[metric] = formula if formula is not None else state.joint(metric, per_name, False)
    heldout, failures = _held_out(state, formulas)
    unique = tuple(dict(t) for t in dict.fromkeys(tuple(sorted(u.items())) for u in state.used))
    return Fitted(formulas, unique, tuple(heldout), not failures, tuple(failures), tuple(state.notes))


def _held_out(state: FitState, formulas: dict) -> tuple[list, list]:
    names, ladders, base = state.names, state.ladders, state.base
    used = {tuple(sorted(u.items())) for u in state.used}
    heldout = [dict(base, **{n: ladders[n][-1]}) for n in names]
    if len(names) > 1:
        heldout.append(dict(base, **{n: ladders[n][-1] for n in names}))
    picks: dict = {n: [] for n in names}
    for n in names:  # sizes of each symbol alone that no fit used: where a logarithm steps, and between powers of two
        for pool in (state.switches(n), state.reserved[n], state.between[n]):
            for v in pool:
                sizes = dict(base, **{n: v})
                if v in picks[n] or tuple(sorted(sizes.items())) in used:
                    continue
                if state.sweep.try_at(sizes) is not None:
                    picks[n].append(v)
                    heldout.append(sizes)
                    break
        if not picks[n] and state.between[n]:
            state.notes.append(f"no size of {n} between powers of two could be analysed "
                               f"(tried {', '.join(map(str, state.between[n][:4]))}, ...): the formulas are only "
                               "checked at powers of two")
    if len(names) > 1:
        for i in range(max(len(p) for p in picks.values())):  # all symbols off their ladders together
            together = dict(base, **{n: p[min(i, len(p) - 1)] for n, p in picks.items() if p})
            if state.sweep.try_at(together) is not None:
                heldout.append(together)
    heldout = [h for i, h in enumerate(heldout) if h not in heldout[:i]]
    failures = []
    for sizes in heldout:
        measured = state.sweep.at(sizes)
        subs = {size_symbol(n): sizes[n] for n in names}
        for metric in METRICS:
            fitted = sympy.expand(evaluate(formulas[metric], subs))
            truth = sympy.Add(*[sympy.Rational(c.numerator, c.denominator) * mono for mono, c in measured[metric].items()])
            if sympy.expand(fitted - truth) != 0:
                failures.append((sizes, metric, fitted, truth))
    failures.extend(_not_integers(state, formulas))
    return heldout, failures


def _not_integers(state: FitState, formulas: dict) -> list:
    """Sizes (no measurement needed) where a fitted formula's coefficient of some monomial is not an integer."""
    checks = []
    for n in state.names:
        lo = min(state.ladders[n])
        for v in sorted(set(state.between[n][:6]) | set(range(lo, lo + 4))):
            checks.append(dict(state.base, **{n: v}))
    out = []
    for sizes in checks:
        subs = {size_symbol(n): sizes[n] for n in state.names}
        for metric in METRICS:
            value = sympy.expand(evaluate(formulas[metric], subs))
            for term in sympy.Add.make_args(value):
                coeff, _ = term.as_coeff_Mul()
                if not coeff.is_Integer:
                    out.append((sizes, metric, value, None))
                    return out
    return out


def coefficients(expr: sympy.Expr, metric: str) -> Coefficients:
    """{monomial in the exact symbols' atoms: rational coefficient} of an expanded formula."""
    if expr.has(sympy.Max):
        raise InputError(f"the model's {metric} is a Max of paths no size range orders; symbolic hyperparameters need "
                         "one closed form per build")
    out: dict = {}
    for term in sympy.Add.make_args(sympy.expand(expr, log=False)):
        coeff, rest = term.as_coeff_Mul()
        if not coeff.is_Rational:
            raise InputError(f"cannot fit the {metric} term {term}: its coefficient is not rational")
        out[rest] = out.get(rest, Fraction(0)) + Fraction(int(coeff.p), int(coeff.q))
    return out
