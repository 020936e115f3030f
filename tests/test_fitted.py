"""The fitted engine: exact recovery of the formula family, agreement with the symbolic engine, clear refusals."""

import math
import pathlib

import pytest
import sympy
import torch
from torch.export import Dim

import depthscope
from depthscope.model_file import load_model_file
from depthscope.engine.fit import detect_terms, fits
from depthscope.engine.fitted import analyze_fitted
from depthscope.symbols import evaluate, size_symbol

b, n = size_symbol("b"), size_symbol("n")
EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("fn,terms", [
    (lambda v: 7 * v + 3, [(1, 0)]),
    (lambda v: 3 * v * v + 5 * v, [(1, 0), (2, 0)]),
    (lambda v: 2 * (v.bit_length() - 1) + 24, [(0, 1)]),
    (lambda v: v * (v.bit_length() - 1) ** 2, [(1, 2)]),
    (lambda v: 5 * v * (v.bit_length() - 1) + v, [(1, 0), (1, 1)]),
], ids=["linear", "quadratic", "log", "n-log-squared", "n-log-n-plus-n"])
def test_detects_the_smallest_exact_form(fn, terms):
    points = [({"n": v}, fn(v)) for v in (4, 8, 16, 32, 64, 128)]
    assert detect_terms("n", points) == terms


def test_no_form_is_detected_for_square_roots():
    points = [({"n": v}, math.isqrt(v) * 10) for v in (4, 8, 16, 32, 64, 128)]
    assert detect_terms("n", points) is None


def test_joint_fit_of_a_product_basis():
    basis = [{}, {"b": (1, 0)}, {"n": (1, 0)}, {"b": (1, 0), "n": (2, 0)}]
    points = [({"b": x, "n": y}, 4 * x * y * y + 2 * y + 9) for x in (2, 4, 8) for y in (4, 8, 16)]
    assert fits(basis, points) == [9, 0, 2, 4]


def test_loop_rnn_example_is_fitted_with_held_out_check():
    report = depthscope.analyze_file(str(EXAMPLES / "loop_rnn.py"), engine="fitted")
    assert report.engine == "fitted" and report.fit.heldout_passed
    assert report.big_o["work"] == b * n and report.big_o["depth"] == n
    data = report.to_dict()
    assert data["engine"] == "fitted" and data["fit"]["heldout_passed"] is True
    assert {"b", "n"} <= set(data["fit"]["sizes"][0])


# The symbolic examples, fitted: the fit must reproduce the symbolic formulas exactly at every swept size.
SYMBOLIC = ["attention", "mlp", "dilated_cnn", "linear_attention", "lstm", "gpt", "cnn"]


@pytest.mark.parametrize("name", SYMBOLIC)
def test_fitted_agrees_with_symbolic(name):
    spec = load_model_file(str(EXAMPLES / f"{name}.py"))
    symbolic = depthscope.analyze_file(str(EXAMPLES / f"{name}.py"), engine="symbolic")
    fitted = analyze_fitted(spec)
    assert fitted.fit.heldout_passed
    for sizes in fitted.fit.sizes + fitted.fit.heldout:
        values = {size_symbol(k): v for k, v in sizes.items()}
        for metric in ("work", "depth", "flops"):
            want = evaluate(getattr(symbolic, metric), values)
            got = sympy.nsimplify(evaluate(getattr(fitted, metric), values))
            assert got == want, (metric, sizes)


class IrregularLoop(torch.nn.Module):
    def forward(self, x):
        for _ in range(math.isqrt(x.shape[1])):
            x = x * 2
        return x


def test_refuses_when_no_formfits():
    with pytest.raises(depthscope.InputError, match="cannot describe it"):
        depthscope.analyze(IrregularLoop(), (torch.randn(2, 8),), dynamic_shapes={"x": {1: Dim("n")}}, engine="fitted")


def test_fitted_needs_room_in_the_range():
    with pytest.raises(depthscope.InputError, match="at least 3 powers of two"):
        depthscope.analyze(IrregularLoop(), (torch.randn(2, 8),), dynamic_shapes={"x": {1: Dim("n", max=9)}},
                           engine="fitted")
