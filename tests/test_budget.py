"""The budget grammar (parsing, errors, fuzzing) and term-by-term dominance of big-O classes."""

import builtins
import contextlib
import sys
import time
from unittest import mock

import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from depthscope.check.budget import BudgetError, parse_budget
from depthscope.complexity import Class, class_of_expr
from depthscope.errors import InputError
from depthscope.symbols import size_symbol

n, m, b, d = (size_symbol(x) for x in "nmbd")
log = sympy.log


def cls(text):
    return parse_budget(text).text()


# ---------------------------------------------------------------------------------------------
# Grammar


@pytest.mark.parametrize("text, expected", [
    ("n", "n"),
    ("log(n)", "log(n)"),
    ("b*n**2*d", "b*d*n**2"),
    ("O(b*n**2*d)", "b*d*n**2"),
    ("  O( n * log( n ) )  ", "n*log(n)"),
    ("n*log(n) + n", "n*log(n)"),
    ("n**2 + n*log(n) + 7", "n**2"),
    ("(n + m)**2", "m**2 + m*n + n**2"),
    ("n + m", "m + n"),
    ("3*n + 2", "n"),
    ("1", "1"),
    ("2**10", "1"),
    ("n**(3/2)", "n**(3/2)"),
    ("(n**3)**(1/2)", "n**(3/2)"),
    ("n**2**2", "n**4"),
    ("n/log(n)", "n/log(n)"),
    ("b*n**2/log(n)", "b*n**2/log(n)"),
    ("n/(n + 1)", "1"),
    ("log(n**2*m)", "log(m) + log(n)"),
    ("log(n + m)", "log(m) + log(n)"),
    ("log(n*log(n))", "log(n)"),
    ("log(8)*n", "n"),
    ("log(1) + n", "n"),
    ("log(n)**2*log(m)", "log(m)*log(n)**2"),
    ("n**0", "1"),
    ("0*n + 1", "1"),
    ("O", "O"),  # a size may be called O; only O(...) around the whole budget is the wrapper
    ("I + E + pi + S", "E + I + S + pi"),  # names are sizes, never sympy's constants
    ("__import__", "__import__"),
])
def test_parses(text, expected):
    assert cls(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("0", "zero"),
    ("n^2", "write n**2"),
    ("n-1", "subtraction"),
    ("-n", "subtraction"),
    ("1.5*n", "only integers"),
    ("sqrt(n)", "unknown function sqrt()"),
    ("exp(n)", "unknown function exp()"),
    ("log", "log must be called"),
    ("log(n, 2)", "log() takes one argument"),
    ("O(O(n))", "whole budget"),
    ("n +", "at the end"),
    ("(n", "expected ')'"),
    ("n)", "unexpected ')'"),
    ("n n", "unexpected 'n'"),
    ("n**n", "exponent must be a constant"),
    ("n**log(3)", "rational"),
    ("n**100", "out of range"),
    ("n/0", "division by zero"),
    ("n/(n + m)", "division by a sum"),
    ("log(0)", "below 1"),
    ("log(1/2)", "below 1"),
    ("log(n/m)", "quotient"),
    ("log(log(n))", "log(log"),
    ("n²", "unexpected character"),
    ("n\u0660", "unexpected character"),  # an Arabic-Indic digit is not an ASCII integer
    ("__import__('os').system('true')", "unexpected character"),
    ("(2**64)**64", "constant too large"),
    ("1" * 31, "digits"),
    ("(" * 60 + "n" + ")" * 60, "nested"),
    ("n" + "+n" * 300, "longer than"),
    ("(a+b+c+d+e+f+g+h)**32", "terms"),
])
def test_errors_are_clear(text, fragment):
    with pytest.raises(BudgetError) as info:
        parse_budget(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, InputError)  # exit code 2


def test_error_names_the_column():
    with pytest.raises(BudgetError, match=r"column 5: '\^' is not a power"):
        parse_budget("b*n ^2")


def test_not_a_string():
    with pytest.raises(BudgetError, match="must be a string"):
        parse_budget(3)


def test_adversarial_inputs_are_fast():
    start = time.perf_counter()
    for text in ["(a+b+c+d+e+f)**64", "(a+b)**64*(c+d)**64", "((n+m)**8)**8", "n**64**64",
                 "log(" * 30 + "n" + ")" * 30, "(((((((2**64)**64)**64)**64)**64)**64)**64)",
                 "(n+1)**64**(1/64)", "2**(1/3)**64"]:
        try:
            parse_budget(text)
        except BudgetError:
            pass
    assert time.perf_counter() - start < 5


def test_sympy_expression_is_built_not_parsed():
    expr = parse_budget("b*n**2*d + n**(3/2)*log(m)").to_sympy()
    assert sympy.simplify(expr - (b * d * n**2 + n ** sympy.Rational(3, 2) * log(m))) == 0
    assert expr.free_symbols == {b, d, n, m}
    assert all(s.is_integer and s.is_positive for s in expr.free_symbols)


# ---------------------------------------------------------------------------------------------
# Fuzzing: arbitrary text gives a class or a BudgetError, never another exception, never code execution


@contextlib.contextmanager
def no_code_execution():
    """Make every way of running text as code fail loudly while the parser runs (and only then)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the budget parser tried to evaluate text")

    with contextlib.ExitStack() as stack:
        for name in ("eval", "exec", "compile", "__import__"):
            stack.enter_context(mock.patch.object(builtins, name, refuse))
        stack.enter_context(mock.patch.object(sympy, "sympify", refuse))
        stack.enter_context(mock.patch.object(sys.modules["sympy.core.sympify"], "sympify", refuse))
        stack.enter_context(mock.patch.object(sympy.parsing.sympy_parser, "parse_expr", refuse))
        yield


def _parse_or_error(text):
    try:
        with no_code_execution():
            result = parse_budget(text)
    except BudgetError as exc:
        assert str(exc)
        return None
    assert isinstance(result, Class) and result.terms
    return result


GRAMMAR_CHARS = "nmbd logO()+*/**0123456789 ^-.,_x\t"
FUZZ = settings(max_examples=400, deadline=None)


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text(text):
    _parse_or_error(text)


@FUZZ
@given(st.text(alphabet=GRAMMAR_CHARS, max_size=80))
def test_fuzz_grammar_alphabet(text):
    result = _parse_or_error(text)
    if result is not None:  # what parses prints back to the same class
        assert parse_budget(result.text()) == result


TOKENS = ["n", "m", "b", "log(", "(", ")", "+", "*", "/", "**", "2", "3", "0", "1", "O(", "64", "(1/2)", " "]


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_fuzz_token_soup(tokens):
    _parse_or_error("".join(tokens))


def test_fuzz_code_injection_attempts(tmp_path):
    marker = tmp_path / "pwned"
    for text in [f"__import__('os').system('touch {marker}')", f"exec(\"open('{marker}','w')\")",
                 "().__class__.__base__.__subclasses__()", "lambda: 1", "n; import os", "n\nimport os",
                 "Symbol('x')", "log(n).__class__", "eval('1')", "${n}", "{n}", "n if 1 else m", "n[0]"]:
        assert _parse_or_error(text) is None
    assert not marker.exists()


# Valid budgets built alongside the sympy expression they denote: the grammar's class matches symbols.big_o.

_atoms = st.sampled_from(["n", "m", "b", "2", "3", "1"])


def _combine(children):
    return st.one_of(
        st.tuples(children, children).map(lambda t: f"({t[0]} + {t[1]})"),
        st.tuples(children, children).map(lambda t: f"{t[0]}*{t[1]}"),
        st.tuples(children, st.sampled_from(["1", "2", "3"])).map(lambda t: f"({t[0]})**{t[1]}"),
        # division by constants only: with shrinking terms such as m/n, symbols.big_o drops a constant term
        # that the grammar keeps (1 + m/n is O(1 + m/n)); divisions are tested case by case above
        st.tuples(children, st.sampled_from(["2", "3"])).map(lambda t: f"({t[0]})/{t[1]}"),
        # (not log(n*log(n)): symbols.big_o keeps log(log(n)) as an opaque term, the grammar drops it as dominated)
        st.sampled_from(["log(n)", "log(m*b)", "log(n**2 + m)", "log(n)**2"]),
    )


VALID = st.recursive(_atoms, _combine, max_leaves=6)


def _as_sympy(text):
    """An independent reading of the same text with sympy (test-only; the product never does this)."""
    return sympy.parse_expr(text, local_dict={s.name: s for s in (n, m, b, d)} | {"log": log})


@settings(max_examples=150, deadline=None)
@given(VALID)
def test_valid_budgets_match_big_o(text):
    try:
        parsed = parse_budget(text)
    except BudgetError as exc:  # the only rejections in this family: a zero or an incomparable divisor
        assert "zero" in str(exc) or "division" in str(exc), text
        return
    assert parsed.same_as(class_of_expr(_as_sympy(text))), text
    assert parse_budget(parsed.text()) == parsed


# ---------------------------------------------------------------------------------------------
# Dominance


@pytest.mark.parametrize("found, budget, within", [
    ("n", "n", True),
    ("n", "n**2", True),
    ("n**2", "n", False),
    ("log(n)", "n", True),
    ("n", "log(n)", False),
    ("log(n)**3", "n", True),  # power first, then log power
    ("n*log(n)", "n", False),
    ("n", "n*log(n)", True),
    ("n*log(n)", "n**(3/2)", True),
    ("1", "log(n)", True),
    ("log(n)", "1", False),
    ("b*n**2", "b*n**2*d", True),  # a budget size the model lacks is fine
    ("b*n**2", "n**2", False),  # a model size the budget lacks is a constant there: breach
    ("b*n**2", "n**3", False),
    ("n + m", "n*m", True),
    ("n*m", "n**2 + m**2", False),  # term by term: no single budget term dominates n*m
    ("n*m", "(n + m)**2", True),  # ...but the expanded square has the cross term
    ("n**2 + m", "n**2 + m**2", True),
    ("b*n**2 + b*n*d", "b*n**2*d", True),
    ("b*n**2 + b*n*d", "b*n**2", False),
])
def test_dominance(found, budget, within):
    f, bud = parse_budget(found), parse_budget(budget)
    assert f.within(bud) is within
    assert (not f.excess(bud)) is within


def test_excess_lists_the_offending_terms():
    assert [t.text() for t in parse_budget("n**2 + m + log(b)").excess(parse_budget("n**2"))] == ["m", "log(b)"]


def test_model_class_from_sympy():
    work = 280 * b * n**2 + 32768 * b * n
    depth = 3 * sympy.ceiling(log(n) / log(2)) + 24
    assert class_of_expr(work).text() == "b*n**2"
    assert class_of_expr(depth).text() == "log(n)"
    assert class_of_expr(depth).within(parse_budget("log(n)"))
    assert not class_of_expr(14 * n + 25).within(parse_budget("log(n)"))
    assert class_of_expr(sympy.Integer(7)).text() == "1"
    assert class_of_expr(sympy.sqrt(n) * log(n) ** 2).text() == "n**(1/2)*log(n)**2"


def test_opaque_model_factors_are_never_within():
    odd = class_of_expr(n * sympy.exp(m))
    assert odd.terms[0].opaque
    assert not odd.within(parse_budget("n**64*m**64"))


def test_json_round_trip_and_validation():
    c = parse_budget("b*n**2/log(n) + n**(3/2)*m")
    assert Class.from_json(c.to_json()) == c
    odd = class_of_expr(n * sympy.exp(m))
    assert Class.from_json(odd.to_json()) == odd
    for bad in [{}, "n", [["n"]], [{"n": [1]}], [{"n": ["x", 0]}], [{"1n": [1, 0]}], [{"n": [True, 0]}],
                [{"?": "x"}], [{"n": [1, "1/0"]}]]:
        with pytest.raises(BudgetError):
            Class.from_json(bad)
