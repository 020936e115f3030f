"""Symbolic sizes: symbol creation, exact log2 depth terms, torch-sympy conversion, evaluation and big-O."""

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


# ---------------------------------------------------------------------------------------------
# Big-O: dominant terms over all symbols jointly, coefficients dropped.


def _loosen(expr: sympy.Expr) -> sympy.Expr:
    """Replace ceiling/floor by their argument, Max by the sum and log2 by log: same big-O class."""
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


def _term_signature(term: sympy.Expr):
    """Split a product term into ({symbol: (power, log power)}, opaque factors), or None if constant."""
    sig: dict[sympy.Symbol, list] = {}
    opaque = []
    for factor in sympy.Mul.make_args(term):
        base, exp = factor.as_base_exp()
        if factor.is_number:
            continue
        if isinstance(base, sympy.Symbol) and exp.is_number:
            sig.setdefault(base, [0, 0])[0] += exp
        elif isinstance(base, sympy.log) and isinstance(base.args[0], sympy.Symbol) and exp.is_number:
            sig.setdefault(base.args[0], [0, 0])[1] += exp
        else:
            opaque.append(factor)
    return {k: tuple(v) for k, v in sig.items()}, tuple(sorted(opaque, key=str))


def _dominates(a, b) -> bool:
    """Term a grows at least as fast as term b in every symbol (power first, then log power)."""
    sa, oa = a
    sb, ob = b
    if oa != ob and ob:
        return False
    for sym in set(sa) | set(sb):
        pa = sa.get(sym, (0, 0))
        pb = sb.get(sym, (0, 0))
        if pa < pb:
            return False
    return True


def big_o(expr) -> sympy.Expr:
    """The dominant terms of expr, coefficients dropped ("1" when constant)."""
    expr = as_expr(expr)
    if expr.is_number:
        return ONE
    loose = sympy.expand(_loosen(expr))
    terms = []
    for term in sympy.Add.make_args(loose):
        coeff, rest = term.as_coeff_Mul()
        if term.is_number or (coeff.is_number and coeff.is_negative):
            continue
        sig = _term_signature(rest)
        if not sig[0] and not sig[1]:
            continue
        stripped = sympy.Mul(*[f for f in sympy.Mul.make_args(rest) if not f.is_number])
        terms.append((sig, stripped))
    kept = []
    for i, (sig, t) in enumerate(terms):
        dominated = any(
            _dominates(other, sig) and (not _dominates(sig, other) or j < i)
            for j, (other, _) in enumerate(terms)
            if j != i
        )
        if not dominated:
            kept.append(t)
    if not kept:
        return ONE
    return sympy.Add(*kept)


def fmt(expr) -> str:
    """The canonical string form of an expression (parses back with sympy)."""
    return str(expr)


def parse_symbols(names) -> dict[str, sympy.Symbol]:
    """The namespace to parse report expressions: size symbols plus log, Max, Min, ceiling, floor."""
    ns = {name: size_symbol(name) for name in names}
    ns.update(log=sympy.log, Max=sympy.Max, Min=sympy.Min, ceiling=sympy.ceiling, floor=sympy.floor)
    return ns


def ilog2_ceil(k: int) -> int:
    """ceil(log2 k) for a positive Python int."""
    return (k - 1).bit_length() if k > 1 else 0


__all__ = [
    "ONE",
    "ZERO",
    "SymbolInfo",
    "as_expr",
    "big_o",
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
