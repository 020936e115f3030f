"""Many formulas at many sizes, fast: compiled once with sympy.lambdify, ceil(log2 x) kept exact on integers."""

from __future__ import annotations

import math

import sympy

from depthscope.symbols import is_clog2, size_symbol

_CLOG2 = sympy.Function("CLOG2")
_FLOG2 = sympy.Function("FLOG2")


def _clog2(x) -> int:
    """ceil(log2 x) for x >= 1, exact on integers (bit length), as symbols.clog2."""
    if isinstance(x, int) or float(x).is_integer():
        v = int(x)
        return (v - 1).bit_length() if v > 1 else 0
    return math.ceil(math.log2(x))


def _flog2(x) -> int:
    """floor(log2 x) for x >= 1, exact on integers."""
    if isinstance(x, int) or float(x).is_integer():
        return max(int(x).bit_length() - 1, 0)
    return math.floor(math.log2(x))


def _is_flog2(e) -> bool:
    return isinstance(e, sympy.floor) and is_clog2(sympy.ceiling(e.args[0]))


def _exact_logs(expr: sympy.Expr) -> sympy.Expr:
    """ceiling(log(x)/log(2)) -> CLOG2(x), floor(log(x)/log(2)) -> FLOG2(x): floats would miss powers of two."""
    expr = expr.replace(lambda e: isinstance(e, sympy.ceiling) and is_clog2(e),
                        lambda e: _CLOG2(_log_argument(e.args[0])))
    return expr.replace(_is_flog2, lambda e: _FLOG2(_log_argument(e.args[0])))


def _log_argument(e):
    """x from log(x)/log(2)."""
    for factor in sympy.Mul.make_args(e):
        if isinstance(factor, sympy.log):
            return factor.args[0]
    raise ValueError(f"not a log2: {e}")  # pragma: no cover - is_clog2 checked the form


class Compiled:
    """Formulas compiled once; `values(sizes)` gives each one's number at those sizes (size names to ints)."""

    def __init__(self, exprs, names):
        exprs = [sympy.sympify(e) for e in exprs]
        unique: dict = {}
        self.slots = [unique.setdefault(e, len(unique)) for e in exprs]
        self.names = sorted(names)
        symbols = [size_symbol(name) for name in self.names]
        bodies = [_exact_logs(e) for e in unique]
        loose = {str(s) for e in bodies for s in e.free_symbols} - set(self.names)
        if loose:
            raise ValueError(f"formulas use symbols with no size: {', '.join(sorted(loose))}")
        self._fn = sympy.lambdify(symbols, bodies, modules=[
            {"CLOG2": _clog2, "FLOG2": _flog2, "ceiling": math.ceil, "floor": math.floor}, "math"])

    def values(self, sizes: dict[str, int]) -> list[float]:
        """Every formula at `sizes` (a float each; integers stay exact up to 2**53)."""
        out = self._fn(*[sizes[name] for name in self.names])
        return [float(out[slot]) for slot in self.slots]
