"""The Analysis: immutable, with provenance, and views (critical path, ops, modules) taken at the caller's sizes."""

import dataclasses
import json

import pytest
import sympy
import torch
from torch.export import Dim

import depthscope
import depthscope.cli as cli
from depthscope.symbols import evaluate, size_symbol


class TwoSums(torch.nn.Module):
    """Two reductions side by side: over n (depth log n) and over d (depth log d); no size range orders them."""

    def forward(self, x):
        return x.sum(1, keepdim=True) + x.sum(2, keepdim=True)


class CumsumOrNorm(torch.nn.Module):
    """A scan over n (depth log n, twice for the prefix tree) beside a matmul over d (depth 1 + log d)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x, w):
        return x.cumsum(1)[:, :, :1] + (x @ w).sum(-1, keepdim=True)


class Branches(torch.nn.Module):
    """softmax over n (2 log n + 3) against a product over m then a sum over m (2 log m + 1)."""

    def forward(self, x, y):
        return x.softmax(-1).sum(-1) + (y * y).sum(-1) + y.sum(-1)


MODELS = {
    "two_sums": (TwoSums(), (torch.randn(2, 8, 16),), {"x": {0: Dim("b"), 1: Dim("n"), 2: Dim("d")}},
                 [{"b": 2, "n": 4, "d": 4096}, {"b": 2, "n": 4096, "d": 4}]),
    "cumsum_or_matmul": (CumsumOrNorm(), (torch.randn(2, 8, 16), torch.randn(16, 16)),
                         {"x": {1: Dim("n"), 2: Dim("d")}, "w": {0: Dim("d"), 1: Dim("d")}},
                         [{"n": 4, "d": 2**12}, {"n": 2**12, "d": 4}]),
    "branches": (Branches(), (torch.randn(4, 8), torch.randn(4, 16)),
                 {"x": {0: Dim("r"), 1: Dim("n")}, "y": {0: Dim("r"), 1: Dim("m")}},
                 [{"r": 3, "n": 2, "m": 2**16}, {"r": 3, "n": 2**16, "m": 2}]),
}


def _static_depth(model, inputs, dynamic, sizes):
    """Independent oracle: the depth of a static export at these sizes (no symbols, no path choice)."""
    shapes = []
    for name, t in zip(dynamic, inputs):  # the spec lists the inputs in forward's order
        shape = list(t.shape)
        for axis, dim in dynamic[name].items():
            shape[axis] = sizes[dim.__name__]
        shapes.append(torch.empty(shape, device="meta"))
    return depthscope.analyze(model, tuple(shapes)).depth


@pytest.mark.parametrize("name", MODELS)
def test_listed_path_is_the_longest_at_the_sizes_shown(name):
    model, inputs, dynamic, points = MODELS[name]
    analysis = depthscope.analyze(model, inputs, dynamic_shapes=dynamic)
    assert len(analysis.paths) >= 2, "the model must have incomparable paths"
    chosen = []
    for sizes in points:
        at = {size_symbol(k): v for k, v in sizes.items()}
        depth = evaluate(analysis.depth, at)
        assert depth == _static_depth(model, inputs, dynamic, sizes)
        path = analysis.critical_path(sizes)
        steps = sum(evaluate(s.depth, at) for s in path.steps)
        assert steps == depth == evaluate(path.depth, at)  # shares of the path add up to 100%
        chosen.append(tuple(s.node for s in path.steps))
        # every op's and every module's part of the path add up to the same total
        assert sum(evaluate(o.depth, at) for o in analysis.ops(sizes)) == depth
        assert evaluate(next(m for m in analysis.modules(sizes) if m.path == "").depth, at) == depth
    assert chosen[0] != chosen[1], "different sizes must pick different branches"


def _shares(text: str, section: str) -> list[float]:
    block = text.split(section, 1)[1].split("\n\n", 1)[0]
    return [float(line.split()[-1].rstrip("%")) for line in block.splitlines()[3:] if line.strip().endswith("%")]


def test_two_sums_cli_lists_the_branch_that_is_longest_there(tmp_path, capsys):
    path = tmp_path / "two.py"
    path.write_text("import torch\nfrom torch.export import Dim\n\nclass M(torch.nn.Module):\n"
                    "    def forward(self, x):\n        return x.sum(1, keepdim=True) + x.sum(2, keepdim=True)\n\n"
                    "model = M()\nexample_inputs = (torch.randn(2, 8, 16),)\n"
                    "dynamic_shapes = {'x': {0: Dim('b'), 1: Dim('n'), 2: Dim('d')}}\n")
    for at, branch in ((["b=2", "n=4", "d=4096"], "ceiling(log(d)/log(2))"), (["b=2", "n=4096", "d=4"], "ceiling(log(n)/log(2))")):
        args = ["analyze", str(path)] + [x for a in at for x in ("--at", a)]
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        path_block = out.split("critical path:", 1)[1]
        assert branch in path_block
        assert abs(sum(_shares(out, "critical path:")) - 100.0) < 0.2
        assert cli.main(args + ["--format", "json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["views_at"] == {k: int(v) for k, v in (a.split("=") for a in at)}
        assert any(branch == s["depth"] for s in data["critical_path"])
        assert len(data["critical_paths"]) == 2


def test_analysis_is_immutable():
    analysis = depthscope.analyze(TwoSums(), (torch.randn(2, 8, 16),), dynamic_shapes={"x": {1: Dim("n")}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        analysis.work = sympy.S.Zero
    with pytest.raises(TypeError):
        analysis.symbols["n"] = None
    assert isinstance(analysis, depthscope.Analysis)
    assert analysis.exactness == "exact" and analysis.is_exact and analysis.provenance.reasons == ()


def test_unmodeled_ops_make_the_result_approximate(capsys):
    lib = torch.library.Library("depthscope_prov_test", "FRAGMENT")
    lib.define("opaque(Tensor x) -> Tensor")
    lib.impl("opaque", lambda x: x.clone(), "CompositeExplicitAutograd")
    lib.impl("opaque", lambda x: torch.empty_like(x), "Meta")

    class M(torch.nn.Module):
        def forward(self, x):
            return torch.ops.depthscope_prov_test.opaque(x) + 1

    analysis = depthscope.analyze(M(), (torch.randn(4, 8),), dynamic_shapes={"x": {0: Dim("n")}})
    assert analysis.unmodeled == (("depthscope_prov_test.opaque.default", 1),)
    assert analysis.exactness == "approximate" and not analysis.is_exact
    assert "no cost rule" in analysis.provenance.reasons[0]
    data = analysis.to_dict()
    assert data["exactness"] == "approximate" and "no cost rule" in data["provenance"]["reasons"][0]


def test_fitted_and_hyperparameter_results_carry_their_exactness(tmp_path, capsys):
    loop = tmp_path / "loop.py"
    loop.write_text("import torch\nfrom torch.export import Dim\n\nclass M(torch.nn.Module):\n"
                    "    def forward(self, x):\n        h = x[:, 0]\n        for t in range(x.shape[1]):\n"
                    "            h = torch.tanh(h + x[:, t])\n        return h\n\n"
                    "model = M()\nexample_inputs = (torch.randn(2, 8, 4),)\ndynamic_shapes = {'x': {1: Dim('n', max=64)}}\n")
    for fmt in ("table", "markdown", "json"):
        assert cli.main(["analyze", str(loop), "--format", fmt]) == 0
        out = capsys.readouterr().out
        if fmt == "json":
            data = json.loads(out)
            assert data["exactness"] == "fitted-exact" and data["fit"]["heldout_passed"] is True
            assert data["provenance"]["engine"] == "fitted" and "symbolic capture failed" in data["provenance"]["fallback"]
        else:
            assert "fitted-exact" in out and "held-out check passed" in out


HEAD = """
import torch
from torch import nn
from torch.export import Dim

def model(d: int = 16):
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

def example_inputs(d: int = 16):
    return (torch.randn(2, d),)

dynamic_shapes = {"input": {0: Dim("b")}}
symbolic = ("d",)
"""


def test_hyperparameter_results_carry_their_exactness_in_every_format(tmp_path, capsys):
    path = tmp_path / "head.py"
    path.write_text(HEAD)
    for fmt in ("table", "markdown", "json"):
        assert cli.main(["analyze", str(path), "--format", fmt]) == 0
        out = capsys.readouterr().out
        if fmt == "json":
            data = json.loads(out)
            assert data["exactness"] == "fitted-exact" and data["fit"]["fitted_in"] == ["d"]
            assert data["fit"]["heldout_passed"] is True and data["provenance"]["breakdown_at"] == {"d": 16}
        else:
            assert "fitted-exact" in out and "held-out check passed" in out
