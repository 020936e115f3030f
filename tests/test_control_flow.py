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
from depthscope.capture.standins import associative_scan_standin
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


class SuffixSum(torch.nn.Module):
    def forward(self, x):
        return associative_scan(lambda u, v: u + v, x, dim=1, reverse=True, combine_mode="generic")


def test_reverse_associative_scan_is_torchs_own_lowering():
    """reverse=True runs as torch runs it: flip, the scan, flip back (two copies of b*n: numel work, depth 1)."""
    report = depthscope.analyze(SuffixSum(), (torch.randn(2, 8),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    assert sympy.expand(report.work - (2 * b * (n - 1) + 2 * b * n)) == 0
    assert report.depth == 2 * clog2(n) + 2
    assert [s.op for s in report.critical_path().steps] == ["aten.flip.default", "higher_order.associative_scan",
                                                     "aten.flip.default"]


def test_associative_scan_stand_in_computes_the_scan():
    """The stand-in is torch's associative_scan op on the same inputs: same results, forward and reverse."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 2, generator=gen)
    # a tree adds in another order than cumsum: equal up to float32 rounding
    assert torch.allclose(associative_scan_standin(lambda u, v: u + v, x, dim=1), x.cumsum(1), atol=1e-5)
    assert torch.allclose(associative_scan_standin(lambda u, v: u + v, x, dim=-2, reverse=True),
                          x.flip(1).cumsum(1).flip(1), atol=1e-5)
    a, bias = torch.rand(2, 6, 3, generator=gen), torch.randn(2, 6, 3, generator=gen)
    model = LinearRecurrence()
    want = model(a, bias)
    h, got = torch.zeros(2, 3), []
    for t in range(6):
        h = a[:, t] * h + bias[:, t]
        got.append(h)
    assert torch.allclose(want, torch.stack(got, 1), atol=1e-5)
    standin = associative_scan_standin(lambda l, r: (l[0] * r[0], r[0] * l[1] + r[1]), (a, bias), dim=1)[1]
    assert torch.allclose(standin, want, atol=1e-5)


def test_associative_scan_stand_in_is_only_active_during_capture():
    # a fixed input: the tree's sums may round differently from cumsum's by more than allclose's atol=1e-8 near 0
    model, x = PrefixSum(), torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
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


class ScanOverLSTM(torch.nn.Module):
    """An LSTM, then an associative scan whose combine function is an attribute of the model."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 8, batch_first=True)
        self.combine = lambda u, v: u * v + v

    def forward(self, x):
        return associative_scan(self.combine, self.rnn(x)[0], dim=1, combine_mode="generic")


def test_capture_keeps_nothing_alive_after_the_analysis():
    """Stand-ins hold no state beyond one capture: once the caller drops the model, nothing in depthscope (no
    module-level table, no cache) keeps the model, its LSTM or the combine function alive, even while the report is."""
    import gc
    import weakref

    model = ScanOverLSTM()
    refs = {"model": weakref.ref(model), "lstm": weakref.ref(model.rnn), "combine": weakref.ref(model.combine)}
    report = depthscope.analyze(model, (torch.randn(2, 6, 4),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    assert report.engine == "symbolic" and report.unmodeled == ()
    assert {"aten.lstm.input", "higher_order.associative_scan"} <= {op.op for op in report.ops()}
    del model
    gc.collect()
    assert {name: ref() is None for name, ref in refs.items()} == dict.fromkeys(refs, True)
