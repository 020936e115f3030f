"""The longest-path engine: sequence adds, branches take the max, dominated paths are pruned."""

import pytest
import sympy
import torch
from torch.export import Dim

import depthscope
from depthscope.engine.paths import Dominance, forms_of, to_expr
from depthscope.symbols import SymbolInfo, clog2, evaluate, size_symbol

b, n, d = (size_symbol(s) for s in "bnd")
LOG_N, LOG_D = clog2(n), clog2(d)


class Chain(torch.nn.Module):
    """k elementwise ops in sequence: depth k, work k * numel."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        for _ in range(self.k):
            x = x + 1
        return x


class Branches(torch.nn.Module):
    """A sum over n and a sum over d in parallel, then combined: neither path dominates."""

    def forward(self, x):
        return x.sum(1, keepdim=True) + x.sum(2, keepdim=True)


class Dominated(torch.nn.Module):
    """Two paths over the same axis, one with two extra steps: only the longer survives."""

    def forward(self, x):
        short = x.sum(1, keepdim=True)
        long = ((x * 2) + 1).sum(1, keepdim=True)
        return short + long


def test_chain_adds_depth_and_work():
    report = depthscope.analyze(Chain(5), (torch.randn(2, 8),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    assert report.depth == 5
    assert sympy.expand(report.work - 5 * b * n) == 0
    assert [s.op for s in report.critical_path().steps] == ["aten.add.Tensor"] * 5


def test_parallel_branches_take_max_of_incomparable_paths():
    report = depthscope.analyze(Branches(), (torch.randn(2, 8, 4),),
                                dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n"), 2: Dim("d")}})
    # each branch: one reduction tree, then the add (depth 1)
    assert report.depth == sympy.Max(LOG_N + 1, LOG_D + 1)
    assert report.big_o["depth"] == sympy.log(n) + sympy.log(d)
    assert report.evaluate(b=2, n=1024, d=8)["depth"] == 11
    assert report.evaluate(b=2, n=4, d=4096)["depth"] == 13


def test_dominated_path_is_pruned():
    report = depthscope.analyze(Dominated(), (torch.randn(2, 8),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    assert report.depth == LOG_N + 3  # mul, add, sum tree, final add
    assert "Max" not in str(report.depth)


def test_bounded_dims_decide_comparisons():
    # 2*ceil(log2 n) + 3 vs ceil(log2 n) + 5: incomparable for n >= 2, but with n >= 4 the first dominates
    a = forms_of(2 * LOG_N + 3)[0]
    c = forms_of(LOG_N + 5)[0]
    assert not Dominance({"n": SymbolInfo("n", 2)}).dominates(a, c)
    assert Dominance({"n": SymbolInfo("n", 4)}).dominates(a, c)
    # an upper bound lets a constant dominate: 20 >= ceil(log2 n) + 5 when n <= 2**15
    assert Dominance({"n": SymbolInfo("n", 2, 2**15)}).dominates(forms_of(sympy.Integer(20))[0], c)
    assert not Dominance({"n": SymbolInfo("n", 2)}).dominates(forms_of(sympy.Integer(20))[0], c)


def test_correlated_atoms_compare():
    # ceil(log2(b*n)) >= ceil(log2 n) for every b >= 1
    dom = Dominance({"b": SymbolInfo("b"), "n": SymbolInfo("n")})
    assert dom.dominates(forms_of(clog2(b * n))[0], forms_of(LOG_N)[0])
    assert not dom.dominates(forms_of(LOG_N)[0], forms_of(clog2(b * n))[0])


@pytest.mark.parametrize("expr,count", [
    (LOG_N + 3, 1),
    (sympy.Max(LOG_N, LOG_D) + 1, 2),
    (2 * sympy.Max(LOG_N, 3) + sympy.Max(LOG_D, 1), 4),
], ids=["linear", "max-plus-const", "sum-of-maxes"])
def test_forms_distribute_max_over_sum(expr, count):
    forms = forms_of(expr)
    assert len(forms) == count
    rebuilt = sympy.Max(*[to_expr(f) for f in forms])
    for nv, dv in [(2, 2), (2, 4096), (1000, 3), (2**20, 2**9)]:
        assert evaluate(rebuilt, {n: nv, d: dv}) == evaluate(expr, {n: nv, d: dv})


def test_long_chain_is_linear_in_graph_size():
    """1,000 sequential reductions: one closed form, analyzed quickly (depth 1000 ceil(log2 n) + ...)."""

    class Deep(torch.nn.Module):
        def forward(self, x):
            for _ in range(500):
                x = torch.softmax(x, dim=-1) * 2
            return x

    report = depthscope.analyze(Deep(), (torch.randn(2, 8),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    assert report.depth == 500 * (2 * LOG_N + 3) + 500
    assert len(report.critical_path().steps) == 1000


def test_log_of_product_is_at_most_sum_of_logs():
    # ceil(log2 b) + ceil(log2 n) >= ceil(log2(b*n)): a training step's two paths collapse into one
    dom = Dominance({"b": SymbolInfo("b"), "n": SymbolInfo("n")})
    a = forms_of(clog2(b) + 7 * LOG_N + clog2(b * n) + 377)[0]
    c = forms_of(6 * LOG_N + 2 * clog2(b * n) + 377)[0]
    assert dom.dominates(a, c)
    assert not dom.dominates(c, a)
