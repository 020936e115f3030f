"""Hyperparameters as symbols: widths and layer counts in the formulas, exact in the Dims, fitted in the rest."""

from pathlib import Path

import sympy
import torch
from torch import nn
from torch.export import Dim

import depthscope
import depthscope.cli as cli
from conftest import example
from depthscope.symbols import clog2, size_symbol

b, n, d, L = (size_symbol(s) for s in ("b", "n", "d", "layers"))
LOG2 = sympy.log(2)

SINGLE_HEAD = Path(example("seed/attention.py")).read_text()  # the seed article's head, width d a symbol


def test_single_head_attention_in_d(write_model):
    report = depthscope.analyze_file(write_model(SINGLE_HEAD))
    assert report.engine == "fitted" and report.fit.fitted_in == ("d",) and report.fit.heldout_passed
    assert report.big_o["work"] == b * n**2 * d + b * n * d**2
    assert report.big_o["depth"] == sympy.log(n) + sympy.log(d)
    # hand count: 3 projections 2*b*n*d*d, scores 2*b*n*n*d, scale b*n*n, softmax 5*b*n*n, times V 2*b*n*n*d
    assert sympy.expand(report.work - (6 * b * n * d**2 + 4 * b * n**2 * d + 6 * b * n**2)) == 0
    # projection 1 + log2 d, scores 1 + log2 d, scale 1, softmax 2 ceil(log2 n) + 3, times V 1 + ceil(log2 n)
    assert sympy.expand(report.depth - (2 * clog2(d) + 3 * clog2(n) + 7)) == 0
    # held out between powers of two too (3 * 2**j keeps widths divisible), where ceil(log2 d) != log2 d
    assert any(h["d"] & (h["d"] - 1) for h in report.fit.heldout)
    assert report.evaluate(b=2, n=10, d=48)["depth"] == 2 * 6 + 3 * 4 + 7


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mix = nn.Linear(width, width)

    def forward(self, x):
        h = self.norm(x)
        attn = torch.softmax(h @ h.transpose(1, 2), -1) @ h
        return x + self.mix(attn)


class Stack(nn.Module):
    def __init__(self, layers: int = 2, width: int = 16):
        super().__init__()
        self.blocks = nn.ModuleList([Block(width) for _ in range(layers)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_layers_enter_linearly():
    report = depthscope.analyze(Stack, lambda: (torch.randn(2, 8, 16),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}},
                                symbolic=("layers",))
    assert report.fit.heldout_passed
    for metric in (report.work, report.depth):
        poly = sympy.Poly(sympy.expand(metric), L)
        assert poly.degree() == 1, metric
    assert report.big_o["depth"] == L * sympy.log(n)
    assert report.big_o["work"] == b * L * n**2
    one = depthscope.analyze(Stack(1), (torch.randn(2, 8, 16),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    three = depthscope.analyze(Stack(3), (torch.randn(2, 8, 16),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    assert sympy.expand(report.work.subs(L, 1) - one.work) == 0
    assert sympy.expand(report.depth.subs(L, 3) - three.depth) == 0


def test_cli_symbolic_option_and_unknown_name(write_model, capsys):
    path = write_model(SINGLE_HEAD.replace('symbolic = ("d",)', ""))
    assert cli.main(["analyze", path, "--symbolic", "d", "--format", "json"]) == 0
    assert '"fitted_in": [\n      "d"\n    ]' in capsys.readouterr().out
    assert cli.main(["analyze", path, "--symbolic", "heads"]) == 2
    err = capsys.readouterr().err
    assert "no integer hyperparameter heads" in err and "available: d" in err
