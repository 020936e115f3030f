"""depthscope.complexity: big_o and class_of_expr share one dominance, including against the constant term."""

import subprocess
import sys

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import depthscope
from depthscope.check.budget import parse_budget
from depthscope.complexity import ONE, big_o, class_of_expr
from depthscope.symbols import clog2, size_symbol

n, m, b, d = (size_symbol(x) for x in "nmbd")
log = sympy.log


def case(name, *values):
    return pytest.param(*values, id=name)


@pytest.mark.parametrize("expr, expected", [
    # a term that falls with a size is dominated by the constant term
    case("constant-beats-reciprocal", 5 + 1 / n, 1),
    case("constant-beats-log-over-n", 1 + log(n) / n, 1),
    case("constant-beats-clog2-over-n", 3 + clog2(n) / n, 1),
    case("constant-beats-reciprocals-of-two-sizes", 7 + 1 / n + log(n) / n + 1 / (n * m), 1),
    case("constant-minus-reciprocal", 2 - 1 / n, 1),
    case("expanded-quotient", (n + 1) / n, 1),
    # without a constant term, a falling term is its own class
    case("reciprocal-alone", 1 / n, 1 / n),
    case("log-over-n-alone", 3 * log(n) / n, log(n) / n),
    # mixed: n/m grows with n and falls with m, so neither it nor the constant dominates the other
    case("ratio-alone", n / m, n / m),
    case("ratio-and-constant", 1 + n / m, 1 + n / m),
    case("ratio-and-its-denominator", m + n / m, m + n / m),
    case("chunks-and-constant", 3 + sympy.ceiling(n / b), 1 + n / b),
    # ... but n/m <= n (sizes are at least 1), as n*log(n)/m is not
    case("ratio-under-its-numerator", n + 2 * n / m, n),
    case("n-log-n-over-m-and-n", n * log(n) / m + n, n * log(n) / m + n),
    case("growing-beats-reciprocal", n + 1 / n, n),
    case("log-beats-constant", clog2(n) + 5 + 1 / n, log(n)),
])
def test_big_o_against_the_constant(expr, expected):
    assert sympy.expand(big_o(expr) - expected) == 0, big_o(expr)
    assert class_of_expr(expr) == class_of_expr(expected)


def test_class_of_expr_text_and_budgets():
    assert class_of_expr(5 + 1 / n).text() == "1"
    assert class_of_expr(5 + 1 / n).within(parse_budget("1"))
    assert class_of_expr(1 + log(n) / n) == ONE
    mixed = class_of_expr(1 + n / m)
    assert mixed.text() == "1 + n/m"
    assert not mixed.within(parse_budget("1"))
    assert not mixed.within(parse_budget("n/m"))
    assert mixed.within(parse_budget("n"))


def test_big_o_keeps_opaque_factors_as_sympy_factors():
    assert big_o(3 * n * sympy.exp(m) + 2 * m) == n * sympy.exp(m) + m
    assert big_o(3 * n * sympy.exp(m) + n) == n * sympy.exp(m)  # an opaque factor counts as growing
    assert big_o(n**d + 1) == n**d


def test_depthscope_big_o_is_complexity_big_o():
    assert depthscope.big_o is big_o


def test_importing_complexity_imports_neither_sympy_nor_torch():
    probe = ("import sys, depthscope.complexity, depthscope.check.budget; "
             "print(sorted(m for m in ('sympy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


_SIZES = st.sampled_from([n, m, b])
_MONOMIAL = st.tuples(st.integers(1, 9), _SIZES, st.integers(-2, 2), st.integers(-1, 2), _SIZES, st.integers(-1, 1))


@settings(max_examples=150, deadline=None)
@given(st.lists(_MONOMIAL, min_size=1, max_size=5), st.integers(0, 3))
def test_big_o_is_its_own_class(monomials, constant):
    expr = sympy.Integer(constant) + sympy.Add(*[c * x**p * log(x) ** q * y**r for c, x, p, q, y, r in monomials])
    cls = class_of_expr(expr)
    assert class_of_expr(big_o(expr)) == cls
    assert big_o(big_o(expr)) == big_o(expr)
    # every term of the expression is within its class, and every kept term is one of the expression's
    assert class_of_expr(expr + big_o(expr)) == cls
    for term in sympy.Add.make_args(sympy.expand(expr)):
        assert class_of_expr(term).within(cls)
