"""What a rule may return: work, depth and FLOPs as exact, finite, non-negative expressions over size symbols.

A part of a cost is valid when it is a sympy expression built from
- integer and rational constants (no floats: costs are counted exactly; no irrationals such as sqrt(2) or
  log(8)/log(2), which is 3 only to a computer algebra system that is asked to simplify it),
- size symbols (positive integers, as `depthscope.symbols.size_symbol` makes them; in a graph, only its sizes),
- +, *, integer powers, Max, Min, floor, ceiling, Mod, and log only as ceil(log2 x) or floor(log2 x), that is
  `ceiling(log(x)/log(2))` (what `clog2` builds) or `floor(log(x)/log(2))` (x may be a product: sympy writes
  ceil(log2(3 n)) as `ceiling(log(n)/log(2) + log(3)/log(2))`),
and is non-negative: when it has a negative number anywhere (`n - 1`), it is evaluated exactly at sizes across
each symbol's range (the 17 smallest, then up to 10^12, all symbols together and each alone at its largest), and
a negative or infinite value there is an error. (Sampling: a negative value only between the samples is missed.)
"""

from __future__ import annotations

import functools

import sympy

from depthscope.symbols import evaluate

_LOG2 = sympy.log(2)
_ROUNDING = (sympy.floor, sympy.ceiling)
_NOT_FINITE = (sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)
_FUNCTIONS = (sympy.Add, sympy.Mul, sympy.Max, sympy.Min, sympy.floor, sympy.ceiling, sympy.Mod)


class InvalidCost(ValueError):
    """A rule returned something that is not a valid cost (the message says what and why)."""


def check_cost(cost, symbols: dict | None = None, given=()) -> None:
    """Raise InvalidCost unless work, depth, FLOPs and bytes are valid; `symbols` maps the graph's size symbols to their
    (min, max) ranges (max None when unbounded), None to accept any size symbol with range [1, inf). `given` are
    the sizes the rule was given (or a function returning them): a float in them (torch's `floor(2.0*H)` after
    an upsample by a float scale) is the graph's own and may pass through to the cost."""
    for part in ("work", "depth", "flops", "bytes"):
        value = getattr(cost, part)
        reason = _reason(value, symbols, given)
        if reason is not None:
            raise InvalidCost(f"{part} = {_show(value)} {reason}")


def _show(value) -> str:
    text = str(value) if isinstance(value, sympy.Basic) else repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _reason(value, symbols: dict | None, given) -> str | None:
    if not isinstance(value, sympy.Expr):
        return f"is a {type(value).__name__}, not a sympy expression"
    if value.is_Integer:  # the common case, first
        return "is negative" if value < 0 else None
    reason, has_negative, floats = _structure(value)
    if reason is not None:
        return reason
    if floats:
        sizes = given() if callable(given) else given
        allowed = set().union(*[g.atoms(sympy.Float) for g in sizes if isinstance(g, sympy.Basic)])
        new = sorted(str(f) for f in floats - allowed)
        if new:
            return f"has the float {new[0]}: costs are exact, use integers or sympy.Rational"
    free = value.free_symbols
    if symbols is not None:
        stray = sorted(str(s) for s in free if s not in symbols)
        if stray:
            known = ", ".join(sorted(str(s) for s in symbols)) or "none"
            return f"mentions {', '.join(stray)}, which is not a size of this graph (its sizes: {known})"
    if has_negative:
        ranges = tuple(sorted(((s, symbols.get(s, (1, None)) if symbols else (1, None)) for s in free),
                              key=lambda item: str(item[0])))
        return _negative_at(value, ranges)
    return None


@functools.lru_cache(maxsize=65536)
def _structure(expr: sympy.Expr) -> tuple[str | None, bool, frozenset]:
    """(why the expression is not a valid cost or None, whether a negative number occurs in it, its floats)."""
    reason, negative, floats = _walk(expr)
    return reason, negative, frozenset(floats)


def _walk(expr: sympy.Expr) -> tuple[str | None, bool, set]:
    negative = False
    floats: set = set()
    stack = [expr]
    while stack:
        e = stack.pop()
        if e in _NOT_FINITE or e.is_infinite:
            return f"is not finite ({e} in it)", negative, floats
        if e.is_Number:
            if e.is_Float:
                floats.add(e)
                negative = negative or e < 0
                continue
            if not e.is_Rational:
                return f"has the number {e}, which is not rational", negative, floats
            negative = negative or e < 0
        elif e.is_number and not isinstance(e, _ROUNDING + (sympy.Max, sympy.Min, sympy.Mod)):
            return f"has the number {e}, which is not rational (give constants as Integer or Rational)", \
                negative, floats
        elif e.is_Symbol:
            if not (e.is_integer and e.is_positive):
                return (f"has the symbol {e}, which is not a size (sizes are positive integers: use the shapes the "
                        "rule is given, or depthscope.symbols.size_symbol)"), negative, floats
        elif isinstance(e, _ROUNDING) and _log2_of(e.args[0]) is not None:
            stack.extend(_log2_of(e.args[0]))
        elif isinstance(e, sympy.Pow):
            if not e.exp.is_Integer:
                return f"has {e}, a power with a non-integer exponent (irrational in general)", negative, floats
            negative = negative or e.exp < 0 and not e.base.is_positive
            stack.append(e.base)
        elif isinstance(e, _FUNCTIONS):
            stack.extend(e.args)
        elif isinstance(e, sympy.log):
            return (f"has {e}, which is not rational: the depth of a tree over x values is ceil(log2 x), "
                    "`ceiling(log(x)/log(2))` (depthscope.clog2)"), negative, floats
        else:
            return f"has {type(e).__name__} ({e}), which is not one of +, *, integer powers, Max, Min, floor, " \
                   "ceiling, Mod, ceil(log2 x)", negative, floats
    return None, negative, floats


def _log2_of(e):
    """[x1, x2, ...] when e is log2 of a product of rational powers of them, c1 log(x1)/log(2) + ...
    (sympy writes ceil(log2(3 n)) as ceiling(log(n)/log(2) + log(3)/log(2))); else None."""
    if not e.has(sympy.log):
        return None
    found = []
    for term in sympy.Add.make_args(sympy.expand(e * _LOG2)):
        coeff, rest = term.as_coeff_Mul()
        if not (coeff.is_Rational and isinstance(rest, sympy.log)):
            return None
        found.append(rest.args[0])
    return found


def _samples(lo: int, hi: int | None) -> list[int]:
    lo = max(int(lo), 1)
    points = set(range(lo, lo + 17)) | {2 * lo + 1, max(lo, 1000), max(lo, 1023), max(lo, 10**6), max(lo, 10**12)}
    return sorted(p for p in points if hi is None or p <= hi) or [lo]


@functools.lru_cache(maxsize=4096)
def _negative_at(expr: sympy.Expr, ranges: tuple) -> str | None:
    """Evaluate exactly at sizes across each symbol's range (every symbol moving together, and each alone
    at its largest sample); a negative value is an error."""
    symbols = [s for s, _ in ranges]
    samples = [_samples(*r) for _, r in ranges]
    points = [dict(zip(symbols, values)) for values in zip(*[_cycle(p, max(map(len, samples))) for p in samples])]
    for i, s in enumerate(symbols):
        low = {t: samples[j][0] for j, t in enumerate(symbols)}
        points.append({**low, s: samples[i][-1]})
    for sizes in points or [{}]:
        value = evaluate(expr, sizes)
        at = ", ".join(f"{s}={v}" for s, v in sizes.items())
        if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            return f"is not finite at {at}"
        if value.is_number and value.is_negative:
            return f"is negative ({value}) at {at}" if at else "is negative"
    return None


def _cycle(values: list, n: int) -> list:
    return [values[min(i, len(values) - 1)] for i in range(n)]


__all__ = ["InvalidCost", "check_cost"]
