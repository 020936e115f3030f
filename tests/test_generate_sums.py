"""The generation sums against brute force: the ceil(log2) prefix identity, polynomial and log terms, Max of paths."""

import pytest
import sympy

from depthscope.engine.paths import forms_of
from depthscope.generate.closed import clog2_prefix, dominant_form, evaluate_sums, sum_steps
from depthscope.symbols import clog2, evaluate, ilog2_ceil, size_symbol

b, c, n, T = (size_symbol(s) for s in ("b", "c", "n", "T"))
MINS = {b: 2, n: 2, T: 1}
SIZES = [(2, 2, 1), (3, 2, 2), (2, 7, 10), (5, 16, 17), (2, 33, 100), (4, 1000, 30)]


def brute(expr, bv, nv, tv):
    """sum_{c=n}^{n+T-2} expr, term by term."""
    return sum(evaluate(expr, {b: bv, c: x}) for x in range(nv, nv + tv - 1))


def test_prefix_identity_against_counting():
    running = 0
    for big_n in range(1, 600):
        running += ilog2_ceil(big_n)
        assert evaluate(clog2_prefix(n), {n: big_n}) == running == clog2_prefix(big_n)


@pytest.mark.parametrize("step", [
    1080 * b * c + 221837 * b + 3 * c + 136,                     # a decode step's work
    6 * clog2(c + 1) + 234,                                      # its depth
    2 * clog2(c) + 3 * clog2(c + 2) + b * clog2(c + 1) + c**2,   # several offsets, a coefficient in b
    sympy.Integer(17),                                           # constant in c
])
def test_closed_forms_equal_brute_force(step):
    summed = sum_steps(step, c, n, n + T - 2, MINS, (2, None))
    assert summed.closed and not summed.expr.has(sympy.Sum)
    for bv, nv, tv in SIZES:
        assert evaluate(summed.expr, {b: bv, n: nv, T: tv}) == brute(step, bv, nv, tv)


def test_a_max_with_one_path_longest_everywhere_sums_that_path():
    depth = sympy.Max(6 * clog2(c + 1) + 234, 5 * clog2(c + 1) + 230, 6 * clog2(c) + 233)
    assert dominant_form(forms_of(depth), c, 2, None) is not None
    summed = sum_steps(depth, c, n, n + T - 2, MINS, (2, None))
    assert summed.closed and not summed.expr.has(sympy.Max)
    for bv, nv, tv in SIZES:
        assert evaluate(summed.expr, {n: nv, T: tv}) == brute(depth, bv, nv, tv)


def test_crossing_paths_stay_an_exact_sum():
    # 2*lg(c) + 1 is longer from c = 5 on, lg(c) + 4 below: neither is longest at every c
    depth = sympy.Max(2 * clog2(c) + 1, clog2(c) + 4)
    assert dominant_form(forms_of(depth), c, 2, None) is None
    summed = sum_steps(depth, c, n, n + T - 2, MINS, (2, None))
    assert not summed.closed and summed.expr.has(sympy.Sum) and "none is the longest" in summed.reason
    for bv, nv, tv in SIZES + [(2, 3, 5000)]:
        assert evaluate_sums(summed.expr, {n: nv, T: tv}) == brute(depth, bv, nv, tv)
    # within a bounded range where one path does dominate, the proof uses it
    assert dominant_form(forms_of(depth), c, 8, 1023) is not None


def test_terms_without_a_closed_form_are_kept_and_labelled():
    step = c * clog2(c) + 3 * c
    summed = sum_steps(step, c, n, n + T - 2, MINS, (2, None))
    assert not summed.closed and "no closed-form sum" in summed.reason
    for bv, nv, tv in SIZES[:4]:
        assert evaluate_sums(summed.expr, {n: nv, T: tv}) == brute(step, bv, nv, tv)
