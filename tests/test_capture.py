"""Capture: export's symbols come back in the user's Dim names, with bounds, module paths and wrapped subgraphs."""

import sympy
import torch
from torch.export import Dim

import depthscope
from depthscope.symbols import SymbolInfo, clog2, size_symbol

b, m, n = (size_symbol(s) for s in "bmn")


class Concat(torch.nn.Module):
    def forward(self, x, y):
        return torch.cat([x, y], dim=1).softmax(-1)


def test_derived_dim_is_reported_in_its_root():
    mdim = Dim("m", min=2, max=512)
    report = depthscope.analyze(Concat(), (torch.randn(3, 4), torch.randn(3, 8)),
                                dynamic_shapes={"x": {0: Dim("b"), 1: mdim}, "y": {0: Dim("b"), 1: 2 * mdim}})
    assert report.symbols == {"b": SymbolInfo("b", 2, None), "m": SymbolInfo("m", 2, 512)}
    # cat writes 3m per row, softmax over 3m costs 5 per element
    assert sympy.expand(report.work - 18 * b * m) == 0
    assert report.depth == 1 + 2 * clog2(3 * m) + 3


class RowSum(torch.nn.Module):
    def forward(self, y):
        return y.sum(-1)


def test_only_a_derived_dim():
    report = depthscope.analyze(RowSum(), (torch.randn(3, 8),), dynamic_shapes={"y": {1: 2 * Dim("m", max=64)}})
    assert list(report.symbols) == ["m"]
    assert report.depth == 1 + clog2(m)  # ceil(log2(2m)) = 1 + ceil(log2 m)


def test_unnamed_dims_get_input_and_axis_names():
    report = depthscope.analyze(RowSum(), (torch.randn(3, 8),), dynamic_shapes={"y": {0: Dim.AUTO, 1: Dim.AUTO}})
    assert set(report.symbols) == {"y_dim0", "y_dim1"}


def test_no_dynamic_shapes_gives_numbers():
    report = depthscope.analyze(RowSum(), (torch.randn(3, 8),))
    assert report.symbols == {}
    assert report.work == 24 and report.depth == 3
    assert report.big_o["work"] == 1
    values = report.evaluate()
    assert {k: values[k] for k in ("work", "depth", "flops", "parallelism")} == {
        "work": 24, "depth": 3, "flops": 0, "parallelism": 8.0}
    assert values["bytes"] == 3 * 8 * 4 + 3 * 4  # read x, write the row sums


class NoGrad(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x):
        with torch.no_grad():
            y = self.lin(x).sum(1)
        return y * 2


def test_wrapped_subgraphs_are_costed_not_unmodeled():
    report = depthscope.analyze(NoGrad(), (torch.randn(3, 8),), dynamic_shapes={"x": {0: Dim("b")}})
    assert report.unmodeled == ()
    # linear 2*8*8 + bias 8 per row, sum 8 per row, then a multiply per row
    assert sympy.expand(report.work - 145 * b) == 0
    assert report.depth == (1 + 3 + 1) + 3 + 1
    assert [s.module for s in report.critical_path().steps][0] == "lin"


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())

    def forward(self, x):
        return self.inner(x)


class Stack(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([Block(), Block()])

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return x


def test_module_paths_and_hierarchy():
    report = depthscope.analyze(Stack(), (torch.randn(3, 8),), dynamic_shapes={"x": {0: Dim("b")}})
    paths = {mod.path: mod for mod in report.modules()}
    assert {"blocks", "blocks.0", "blocks.0.inner", "blocks.0.inner.0", "blocks.1.inner.1"} <= set(paths)
    assert paths["blocks.0.inner.0"].type == "Linear"
    assert sympy.expand(paths["blocks"].work - report.work) == 0
    assert sympy.expand(paths["blocks.0"].work + paths["blocks.1"].work - report.work) == 0
    # module depth shares add up to the total depth along the critical path
    assert sympy.expand(paths["blocks"].depth - report.depth) == 0


def test_meta_device_model_needs_no_weights():
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(4096, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 4096))
    report = depthscope.analyze(model, (torch.randn(2, 4096, device="meta"),), dynamic_shapes=({0: Dim("b")},))
    assert sympy.expand(report.flops - 2 * 2 * 4096 * 4096 * b) == 0


class Identity(torch.nn.Module):
    def forward(self, x):
        return x


def test_model_that_computes_nothing():
    report = depthscope.analyze(Identity(), (torch.randn(3, 4),), dynamic_shapes={"x": {0: Dim("b")}})
    assert report.work == 0 and report.depth == 0 and report.parallelism == 0
    assert report.to_dict({"b": 4})["parallelism"]["expr"] == "0"


class NestedOutputs(torch.nn.Module):
    def forward(self, x, *, scale):
        return {"a": x * scale, "b": (x.sum(), x.relu())}


def test_keyword_inputs_and_nested_outputs():
    report = depthscope.analyze(NestedOutputs(), (torch.randn(3, 4),), {"scale": torch.randn(4)},
                                dynamic_shapes={"x": {0: Dim("b")}, "scale": None})
    assert sympy.expand(report.work - 12 * b) == 0
    assert report.depth == 2 + clog2(b)  # the sum over all 4*b elements


class DataDependentSize(torch.nn.Module):
    def forward(self, x):
        return x[x > 0].sum()


def test_data_dependent_sizes_become_named_unknowns():
    report = depthscope.analyze(DataDependentSize(), (torch.randn(4, 8),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    unbacked = [name for name, _ in report.unknowns]
    assert unbacked and all(name in report.symbols for name in unbacked)
    u = size_symbol(unbacked[0])
    assert u in report.work.free_symbols
    assert report.evaluate(b=4, n=8, **{name: 5 for name in unbacked})["work"] > 0


class Bags(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(100, 16, mode="mean")

    def forward(self, ids):
        return self.bag(ids)


def test_ceil_division_leftovers_simplify():
    # a 2-D EmbeddingBag input becomes offsets = arange(0, b*n, n): torch sizes it floor((b*n + n - 1)/n) = b
    report = depthscope.analyze(Bags(), (torch.randint(0, 100, (4, 6)),), dynamic_shapes={"ids": {0: Dim("b"), 1: Dim("n")}})
    assert sympy.expand(report.work - (32 * b * n + b)) == 0  # gather + per-bag sums of 16 wide rows; the offsets
    assert report.depth == clog2(n) + 2  # offsets, gather, then a tree over each bag of n
    assert report.big_o["depth"] == sympy.log(n)
