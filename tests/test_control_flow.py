"""Higher-order ops: cond takes the deeper and larger branch, scan is sequential, associative_scan and map are
parallel, while_loop's trip count becomes a named symbol."""

import sympy
import torch
from torch._higher_order_ops.associative_scan import associative_scan
from torch._higher_order_ops.map import map as hop_map
from torch._higher_order_ops.scan import scan
from torch._higher_order_ops.while_loop import while_loop
from torch.export import Dim

import depthscope
from depthscope.symbols import clog2, size_symbol

b, n, d = (size_symbol(s) for s in "bnd")


class Cond(torch.nn.Module):
    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda x: x.cumsum(1), lambda x: x * 2, (x,))


def test_cond_takes_predicate_then_the_deeper_and_larger_branch():
    report = depthscope.analyze(Cond(), (torch.randn(2, 8),), dynamic_shapes={"x": {1: Dim("n")}})
    # predicate: sum over 2n (1 + ceil(log2 n)), compare (1); true branch cumsum: work 4n, depth 2 ceil(log2 n)
    assert sympy.expand(report.work - (2 * n + 1 + 4 * n)) == 0
    assert report.depth == 3 * clog2(n) + 2
    assert [s.op for s in report.critical_path().steps] == ["aten.sum.default", "aten.gt.Scalar", "aten.cumsum.default"]
    assert report.unmodeled == ()


class Recurrent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(16, 16))

    def forward(self, x):
        def step(h, xt):
            h = torch.tanh(xt @ self.w + h @ self.w)
            return h, h.clone()

        _, ys = scan(step, torch.zeros(x.shape[0], 16), x, dim=1)
        return ys


def test_scan_is_sequential_in_its_length():
    report = depthscope.analyze(Recurrent(), (torch.randn(2, 8, 16),), dynamic_shapes={"x": {1: Dim("n")}})
    assert report.big_o["depth"] == n
    assert report.big_o["work"] == n
    # per step: two [2,16]x[16,16] matmuls (2*2*16*16 each), add, tanh, clone (32 each); zeros init 32
    assert sympy.expand(report.work - (n * (2 * 1024 + 3 * 32) + 32)) == 0
    # per step the body's longest path: matmul (1 + 4), add, tanh, clone
    assert report.depth == 8 * n + 1


class PrefixSum(torch.nn.Module):
    def forward(self, x):
        return associative_scan(lambda u, v: u + v, x, dim=1, combine_mode="generic")


class LinearRecurrence(torch.nn.Module):
    """h_t = a_t * h_(t-1) + b_t as an associative scan over (a, b) pairs."""

    def forward(self, a, bias):
        def combine(left, right):
            return left[0] * right[0], right[0] * left[1] + right[1]

        return associative_scan(combine, (a, bias), dim=1, combine_mode="generic")[1]


def test_associative_scan_has_log_depth():
    report = depthscope.analyze(PrefixSum(), (torch.randn(2, 8),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    assert report.big_o["depth"] == sympy.log(n)
    assert report.depth == 2 * clog2(n)
    assert sympy.expand(report.work - 2 * b * (n - 1)) == 0
    assert report.unmodeled == ()


def test_associative_scan_costs_its_combine_function():
    spec = {0: Dim("b"), 1: Dim("n"), 2: Dim("d")}
    report = depthscope.analyze(LinearRecurrence(), (torch.randn(2, 8, 4), torch.randn(2, 8, 4)),
                                dynamic_shapes={"a": spec, "bias": spec})
    # combine: three elementwise ops on [b, d] elements, depth 2; 2(n - 1) combines in 2 ceil(log2 n) levels
    assert sympy.expand(report.work - 6 * b * d * (n - 1)) == 0
    assert report.depth == 4 * clog2(n)
    assert report.big_o["depth"] == sympy.log(n)


def test_associative_scan_stand_in_is_only_active_during_capture():
    model, x = PrefixSum(), torch.randn(2, 8)
    depthscope.analyze(model, (x,), dynamic_shapes={"x": {1: Dim("n")}})
    assert torch.allclose(model(x), x.cumsum(1))


class Map(torch.nn.Module):
    def forward(self, x):
        return hop_map(lambda row: row.sum(-1), x)


def test_map_runs_its_body_in_parallel():
    report = depthscope.analyze(Map(), (torch.randn(8, 4),), dynamic_shapes={"x": {0: Dim("n"), 1: Dim("d")}})
    assert sympy.expand(report.work - n * d) == 0
    assert report.depth == clog2(d)


class Loop(torch.nn.Module):
    def forward(self, x):
        i = torch.zeros((), dtype=torch.int64)
        return while_loop(lambda i, x: i < 10, lambda i, x: (i + 1, x * 2), (i, x))


def test_while_loop_trip_count_is_a_named_unknown():
    report = depthscope.analyze(Loop(), (torch.randn(2, 8),), dynamic_shapes={"x": {1: Dim("n")}})
    trips = size_symbol("while_loop_trips")
    assert "while_loop_trips" in report.symbols
    assert report.unknowns and report.unknowns[0][0] == "while_loop_trips"
    # per trip: the compare (1) and the body's add (1) and multiply (2n); depth: compare then body
    assert sympy.expand(report.work - (1 + trips * (2 + 2 * n))) == 0
    assert report.depth == 2 * trips + 1
    data = report.to_dict()
    assert data["unknowns"][0]["symbol"] == "while_loop_trips"
