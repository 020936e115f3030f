"""Symbolic sizes: symbol creation, exact log2 depth terms, torch-sympy conversion and evaluation.

Big-O classes of expressions are in depthscope/complexity.py (big_o, class_of_expr).
"""

from __future__ import annotations

import functools
from fractions import Fraction
from dataclasses import dataclass

import sympy

ONE = sympy.S.One
ZERO = sympy.S.Zero
_LOG2 = sympy.log(2)


@functools.lru_cache(maxsize=None)
def size_symbol(name: str) -> sympy.Symbol:
    """A size symbol: a positive integer, as torch's own `_sympy` creates them."""
    return sympy.Symbol(name, integer=True, positive=True)


@dataclass(frozen=True)
class SymbolInfo:
    """A user-facing size symbol with its range (max None when unbounded)."""

    name: str
    min: int = 2
    max: int | None = None

    @property
    def symbol(self) -> sympy.Symbol:
        return size_symbol(self.name)


def as_expr(value) -> sympy.Expr:
    """Convert an int, SymInt-derived expression or sympy value to a sympy expression."""
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, bool):
        return sympy.Integer(int(value))
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, float):
        return sympy.Float(value)
    if isinstance(value, Fraction):
        return sympy.Rational(value.numerator, value.denominator)
    # never parse text: strings would go through sympify's eval
    raise TypeError(f"expected a number or a sympy expression, got {type(value).__name__}")


def _split_pow2(k: sympy.Expr) -> tuple[int, sympy.Expr]:
    """Write k as 2**a * rest with the largest integer a taken out of k's numeric coefficient."""
    coeff, rest = k.as_coeff_Mul()
    if not (coeff.is_Integer and coeff > 0):
        return 0, k
    c = int(coeff)
    a = (c & -c).bit_length() - 1
    return a, sympy.Integer(c >> a) * rest


@functools.lru_cache(maxsize=4096)
def clog2(k) -> sympy.Expr:
    """ceil(log2 k): the depth of a fan-in-2 tree combining k values (0 for k <= 1).

    Integers are evaluated exactly; 2**a * x becomes a + ceil(log2 x), which is exact for integer x >= 1.
    """
    k = as_expr(k)
    if k.is_Integer:
        v = int(k)
        return sympy.Integer((v - 1).bit_length() if v > 1 else 0)
    a, rest = _split_pow2(k)
    if rest.is_Integer:
        return sympy.Integer(a) + clog2(rest)
    return sympy.Integer(a) + sympy.ceiling(sympy.log(rest) / _LOG2)


def is_clog2(e: sympy.Basic) -> bool:
    """True when e is ceiling(log(x)/log(2))."""
    return isinstance(e, sympy.ceiling) and _log2_argument(e.args[0]) is not None


def _log2_argument(e: sympy.Basic):
    if isinstance(e, sympy.Mul) and len(e.args) == 2:
        a, b = e.args
        for x, y in ((a, b), (b, a)):
            if isinstance(x, sympy.log) and y == 1 / _LOG2:
                return x.args[0]
    return None


def evaluate(expr: sympy.Expr, sizes: dict[sympy.Symbol, int]) -> sympy.Expr:
    """Substitute concrete sizes, evaluating ceil(log2 .) terms exactly (integer bit length, no floats)."""
    values = {s: sympy.Integer(v) for s, v in sizes.items()}
    # Replace whole ceil(log2 x) atoms first: sympy's own ceiling of log(k)/log(2) goes through evalf.
    for atom in expr.atoms(sympy.ceiling):
        if is_clog2(atom):
            arg = _log2_argument(atom.args[0]).xreplace(values)
            if arg.is_Integer:
                values[atom] = clog2(arg)
    return expr.xreplace(values)


def numel(shape) -> sympy.Expr:
    """Product of a shape's sizes."""
    return sympy.Mul(*shape) if shape else ONE


# ---------------------------------------------------------------------------------------------
# torch's sympy functions -> plain sympy (floor, ceiling, Mod, Max, Min), so every string parses.


@functools.lru_cache(maxsize=None)
def _torch_function_map():
    try:
        import torch.utils._sympy.functions as F
    except ImportError:  # pragma: no cover - torch always ships it
        return {}

    def floordiv(a, b):
        return sympy.floor(a / b)

    def ceildiv(a, b):
        return sympy.ceiling(a / b)

    mapping = {
        "FloorDiv": floordiv,
        "CeilDiv": ceildiv,
        "CleanDiv": lambda a, b: a / b,
        "IntTrueDiv": lambda a, b: a / b,
        "FloatTrueDiv": lambda a, b: a / b,
        "PythonMod": lambda a, b: sympy.Mod(a, b),
        "Mod": lambda a, b: sympy.Mod(a, b),
        "ModularIndexing": lambda x, d, m: sympy.Mod(sympy.floor(x / d), m),
        "Max": lambda *a: sympy.Max(*a),
        "Min": lambda *a: sympy.Min(*a),
        "PowByNatural": lambda a, b: a**b,
        "FloatPow": lambda a, b: a**b,
        "TruncToInt": lambda a: sympy.floor(a),
        "FloorToInt": lambda a: sympy.floor(a),
        "CeilToInt": lambda a: sympy.ceiling(a),
        "ToFloat": lambda a: a,
        "Identity": lambda a: a,
    }
    return {getattr(F, k): v for k, v in mapping.items() if hasattr(F, k)}


def from_torch(expr: sympy.Expr, rename: dict[sympy.Symbol, sympy.Expr]) -> sympy.Expr:
    """Rename export's symbols (s27 -> n) and rewrite torch's sympy functions into plain sympy."""
    expr = expr.xreplace(rename)
    fmap = _torch_function_map()
    if any(expr.has(cls) for cls in fmap):
        expr = _rewrite(expr, fmap)
    if expr.has(sympy.floor, sympy.ceiling):
        expr = expr.replace(lambda e: isinstance(e, (sympy.floor, sympy.ceiling)), _split_rounding)
    return expr


def _split_rounding(e):
    """floor(p + r) = p + floor(r) for the integer-valued terms p of the argument; then floor(c/X) = -1 and
    ceiling(c'/X) = 1 for sizes X >= 1 and -1 <= c < 0 < c' <= 1. Turns ceil-division leftovers such as
    floor((b*n + n - 1)/n) into b."""
    terms = sympy.Add.make_args(sympy.expand(e.args[0]))
    whole = [t for t in terms if t.is_integer]
    rest = sympy.Add(*[t for t in terms if not t.is_integer])
    if rest == 0:
        return sympy.Add(*whole)
    coeff, frac = rest.as_coeff_Mul()
    if coeff.is_Rational and frac != 1 and _reciprocal_size(frac):
        if isinstance(e, sympy.floor) and -1 <= coeff < 0:
            return sympy.Add(*whole) - 1
        if isinstance(e, sympy.ceiling) and 0 < coeff <= 1:
            return sympy.Add(*whole) + 1
    if not whole:
        return e
    return sympy.Add(*whole) + e.func(rest)


def _reciprocal_size(e) -> bool:
    """1/X with X a product of positive integer sizes (so 0 < 1/X <= 1)."""
    base, exp = e.as_base_exp()
    if not (exp.is_Integer and exp < 0):
        return False
    return all(f.is_integer and f.is_positive for f in sympy.Mul.make_args(base))


def _rewrite(expr, fmap):
    if not expr.args:
        return expr
    args = [_rewrite(a, fmap) for a in expr.args]
    f = fmap.get(type(expr))
    return f(*args) if f is not None else expr.func(*args)


@functools.lru_cache(maxsize=8192)
def fmt(expr) -> str:
    """The canonical string form of an expression (parses back with sympy); reports print the same few often."""
    return str(expr)


def parse_symbols(names) -> dict[str, sympy.Symbol]:
    """The namespace to parse report expressions: size symbols, M (fast memory), log, Max, Min, ceiling, floor, sqrt."""
    ns = {name: size_symbol(name) for name in names}
    ns.setdefault("M", size_symbol("M"))  # the fast memory's size in I/O formulas (cost/traffic.FAST_MEMORY)
    ns.update(log=sympy.log, Max=sympy.Max, Min=sympy.Min, ceiling=sympy.ceiling, floor=sympy.floor, sqrt=sympy.sqrt)
    return ns


def ilog2_ceil(k: int) -> int:
    """ceil(log2 k) for a positive Python int."""
    return (k - 1).bit_length() if k > 1 else 0


__all__ = [
    "ONE",
    "ZERO",
    "SymbolInfo",
    "as_expr",
    "clog2",
    "evaluate",
    "fmt",
    "from_torch",
    "ilog2_ceil",
    "is_clog2",
    "numel",
    "parse_symbols",
    "size_symbol",
]
