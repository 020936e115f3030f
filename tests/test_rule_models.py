"""End to end: small models exported with dynamic dims, through the new op families' rules.

Each model is exported once (torch.export with Dims), analysed symbolically, and checked against the big-O class
its algorithm has in the work-depth model (shared/BACKGROUND.md) and, where the arithmetic is short, against the
exact formula derived by hand here. Every op must be modeled (`report.unmodeled == ()`).
"""

from __future__ import annotations

import functools

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

import depthscope
from depthscope.symbols import clog2, size_symbol

b, n, H, W, Ho, Wo = (size_symbol(s) for s in ("b", "n", "H", "W", "Ho", "Wo"))
log = sympy.log


class Unary(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class Binary(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, y):
        return self.fn(x, y)


def analyze(model, inputs, dynamic_shapes):
    torch.manual_seed(0)
    report = depthscope.analyze(model, inputs, dynamic_shapes=dynamic_shapes)
    assert report.engine == "symbolic"
    assert report.unmodeled == ()
    return report


def bn(min_n: int = 2):
    return {"x": {0: Dim("b", min=2), 1: Dim("n", min=min_n)}}


def stages(k: int) -> int:
    """Bitonic network depth for k keys: L (L + 1) / 2 with L = ceil(log2 k)."""
    lg = (k - 1).bit_length()
    return lg * (lg + 1) // 2


# ---------------------------------------------------------------------------------------------
# Sorting: bitonic network, per row floor(n/2) * L(L+1)/2 compares, depth L(L+1)/2, L = ceil(log2 n).


@functools.lru_cache(maxsize=None)
def sort_report():
    return analyze(Unary(lambda x: torch.sort(x, dim=-1)[0]), (torch.randn(3, 40),), bn())


def test_sort_is_log_squared_deep_and_n_log_squared_work_per_row():
    report = sort_report()
    assert report.big_o["depth"] == log(n) ** 2
    assert report.big_o["work"] == b * n * log(n) ** 2


@pytest.mark.parametrize("bv, nv", [(2, 8), (3, 40), (2, 1000), (5, 1025)])
def test_sort_exact_counts(bv, nv):
    values = sort_report().evaluate(b=bv, n=nv)
    assert values["depth"] == stages(nv)
    assert values["work"] == bv * (nv // 2) * stages(nv)


def test_sort_one_row():
    report = analyze(Unary(lambda x: torch.sort(x)[0]), (torch.randn(40),), {"x": {0: Dim("n", min=2)}})
    assert {k: report.big_o[k] for k in ("work", "depth", "parallelism")} == {
        "work": n * log(n) ** 2, "depth": log(n) ** 2, "parallelism": n}


@pytest.mark.parametrize("name, fn, min_n", [
    ("topk", lambda x: torch.topk(x, 3, dim=-1)[0], 3),
    ("argsort", lambda x: torch.argsort(x, dim=-1), 2),
    ("kthvalue", lambda x: torch.kthvalue(x, 2, dim=-1)[0], 2),
    ("median", lambda x: torch.median(x, dim=-1)[0], 2),
    ("nanmedian", lambda x: torch.nanmedian(x, dim=-1)[0], 2),
])
def test_selection_sorts_the_row(name, fn, min_n):
    """topk/kthvalue/median/argsort cost the bitonic sort of each row (topk's guard k <= n needs n >= 3)."""
    report = analyze(Unary(fn), (torch.randn(3, 40),), bn(min_n))
    assert report.big_o["depth"] == log(n) ** 2, report.depth
    assert report.big_o["work"] == b * n * log(n) ** 2, report.work
    assert report.evaluate(b=2, n=64)["depth"] == stages(64)


def test_msort_sorts_dim0():
    report = analyze(Unary(torch.msort), (torch.randn(40, 3),), {"x": {0: Dim("n", min=2), 1: Dim("b", min=2)}})
    assert report.big_o["depth"] == log(n) ** 2
    assert report.big_o["work"] == b * n * log(n) ** 2


# ---------------------------------------------------------------------------------------------
# FFT: 5 n ceil(log2 n) per row, depth ceil(log2 n).


def test_rfft_is_n_log_n_work_and_log_depth():
    report = analyze(Unary(lambda x: torch.fft.rfft(x)), (torch.randn(3, 40),), bn())
    assert report.big_o["work"] == b * n * log(n)
    assert report.big_o["depth"] == log(n)
    # 5 n ceil(log2 n) per row, nothing else (the default norm does not scale the forward transform)
    values = report.evaluate(b=2, n=64)
    assert {k: values[k] for k in ("work", "depth", "flops", "parallelism")} == {
        "work": 2 * 5 * 64 * 6, "depth": 6, "flops": 0, "parallelism": 640.0}
    assert values["bytes"] == 2 * 64 * 4 + 2 * 33 * 8  # float32 in, complex64 (8 bytes) out, onesided: 33 bins


def test_fft2_composes_the_two_dims_in_sequence():
    """fft2 over [H, W]: 5 HW (ceil(log2 H) + ceil(log2 W)) work, depth ceil(log2 H) + ceil(log2 W)."""
    report = analyze(Unary(lambda x: torch.fft.fft2(x).abs()), (torch.randn(2, 12, 10),),
                     {"x": {1: Dim("H", min=2), 2: Dim("W", min=2)}})
    got = report.evaluate(H=16, W=32)
    fft_work = 2 * 5 * 16 * 32 * (4 + 5)
    assert got["depth"] == 4 + 5 + 1  # + abs
    assert got["work"] == fft_work + 2 * 16 * 32
    assert report.big_o["depth"] == log(H) + log(W)


def test_irfft_after_rfft_round_trip():
    report = analyze(Unary(lambda x: torch.fft.irfft(torch.fft.rfft(x), n=x.shape[-1])), (torch.randn(3, 40),), bn())
    assert report.big_o["work"] == b * n * log(n)
    assert report.big_o["depth"] == log(n)


# ---------------------------------------------------------------------------------------------
# cdist between two sets of n points in M = 5 dims: 3 n^2 M + n^2 (root) work, depth 2 + ceil(log2 5) + 1 = 6.
# torch.cdist guards on n > 25 (its matmul path for large inputs), so the Dims start at 26.


def test_cdist_is_quadratic_work_constant_depth():
    spec = {"x": {0: Dim("n", min=26)}, "y": {0: Dim("n", min=26)}}
    report = analyze(Binary(torch.cdist), (torch.randn(30, 5), torch.randn(30, 5)), spec)
    assert report.big_o["work"] == n**2
    assert report.big_o["depth"] == 1
    assert sympy.expand(report.work - (3 * n**2 * 5 + n**2)) == 0
    assert report.depth == 6


# ---------------------------------------------------------------------------------------------
# Compaction: nonzero / masked_select / unique have data-dependent output sizes; export gives them unbacked
# sizes, and the rules cost them from the input: a flag scan plus a scatter (unique also sorts first).


def test_nonzero_is_a_scan_and_a_scatter():
    report = analyze(Unary(lambda x: torch.nonzero(x > 0)), (torch.randn(3, 40),), {"x": {1: Dim("n", min=2)}})
    N = 3 * n
    # x > 0 (N, 1); flags (N, 1); scan (2N, 2 ceil(log2 N)); scatter of 2 coordinates per element (2N, 1)
    assert sympy.expand(report.work - 6 * N) == 0
    assert sympy.expand(report.depth - (3 + 2 * clog2(N))) == 0
    assert {k: report.big_o[k] for k in ("work", "depth", "parallelism")} == {
        "work": n, "depth": log(n), "parallelism": n / log(n)}
    # read x, write the flags, read them; write the coordinates at their largest (every element kept: 2 int64 each)
    assert sympy.expand(report.bytes - (4 * N + N + N + 2 * 8 * N)) == 0


def test_masked_select_is_a_scan_and_a_scatter():
    report = analyze(Unary(lambda x: torch.masked_select(x, x > 0)), (torch.randn(3, 40),), {"x": {1: Dim("n", min=2)}})
    N = 3 * n
    assert sympy.expand(report.work - (N + 2 * N + N)) == 0
    assert sympy.expand(report.depth - (1 + 2 * clog2(N) + 1)) == 0


def test_unique_exports_with_dynamic_shapes_and_sorts():
    """torch.unique exports as _unique2 with an unbacked output size; its cost is the sort of all N inputs."""
    report = analyze(Unary(lambda x: torch.unique(x)), (torch.randn(3, 40),), {"x": {1: Dim("n", min=2)}})
    assert report.big_o["work"] == n * log(n) ** 2
    assert report.big_o["depth"] == log(n) ** 2
    assert not any(str(s).startswith("u") for s in report.work.free_symbols | report.depth.free_symbols)


def test_unique_consecutive_and_dim_static():
    report = analyze(Unary(lambda x: torch.unique_consecutive(x)), (torch.randn(64),), None)
    # adjacent compare (64, 1), scan (128, 12), scatter (64, 1)
    assert (report.evaluate()["work"], report.evaluate()["depth"]) == (64 + 128 + 64, 1 + 12 + 1)
    report = analyze(Unary(lambda x: torch.unique(x, dim=0)), (torch.randn(16, 4),), None)
    # 16 slices of width 4: sort with 8 * 10 comparators of work 8, depth 10 * (1 + 2); compare 16 * 8 (depth 3);
    # scan over 16 (32, 8); scatter 16 * 4 (1)
    assert report.evaluate()["work"] == 8 * 10 * 8 + 16 * 8 + 32 + 64
    assert report.evaluate()["depth"] == 10 * 3 + 3 + 8 + 1


# ---------------------------------------------------------------------------------------------
# Resampling


def _hw():
    return {"x": {2: Dim("H", min=2), 3: Dim("W", min=2)}}


@pytest.mark.parametrize("mode, reads, depth", [("nearest", 1, 1), ("bilinear", 4, 3), ("bicubic", 16, 5)])
def test_interpolate_scale_2(mode, reads, depth):
    """2x upsampling of [2, 3, H, W]: 24 H W outputs, each `reads` weighted reads and a sum tree."""
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    report = analyze(Unary(lambda x: F.interpolate(x, scale_factor=2, mode=mode, **kwargs)),
                     (torch.randn(2, 3, 10, 12),), _hw())
    got = report.evaluate(H=10, W=12)
    assert got["work"] == 24 * 10 * 12 * reads  # bicubic's output size is floor(2.0*H): compare at a size
    assert got["depth"] == depth


def test_interpolate_antialiased_downsampling_widens_the_filter():
    """Bilinear antialias from H x W to 5 x 6: each output reads 2 * ceil(H / 5) x 2 * ceil(W / 6) inputs."""
    report = analyze(Unary(lambda x: F.interpolate(x, size=(5, 6), mode="bilinear", antialias=True)),
                     (torch.randn(2, 3, 20, 24),), _hw())
    got = report.evaluate(H=20, W=24)
    reads = (2 * 4) * (2 * 4)
    assert got["work"] == 2 * 3 * 5 * 6 * reads
    assert got["depth"] == 1 + 6


def test_grid_sample_bilinear():
    """Coordinates per grid value (2 Ho Wo * 2, depth 1), then 4 weighted reads per output (2*3*Ho*Wo outputs)."""
    spec = {"x": {2: Dim("H", min=2), 3: Dim("W", min=2)}, "y": {1: Dim("Ho", min=2), 2: Dim("Wo", min=2)}}
    report = analyze(Binary(lambda x, g: F.grid_sample(x, g, align_corners=False)),
                     (torch.randn(2, 3, 10, 12), torch.rand(2, 7, 9, 2) * 2 - 1), spec)
    assert sympy.expand(report.work - (4 * Ho * Wo + 6 * Ho * Wo * 4)) == 0
    assert report.depth == 1 + 1 + 2
    assert report.big_o["work"] == Ho * Wo


# ---------------------------------------------------------------------------------------------
# Recurrences: T sequential steps, exported with a static sequence length (a dynamic one specialises).


def _lstm_depth(T: int, layers: int) -> int:
    # a cell: contraction over I = 10 or H = 16 (1 + 4 = 5), four-term gate sum (2), gate math (1 + 2 + 2);
    # entries and recurrent steps cost the same here (lg 10 = lg 16): a wavefront of T + layers - 1 cells
    step = 5 + 2 + 5
    return 1 + (T + layers - 1) * step  # + the zeros initialising h0 / c0


@pytest.mark.parametrize("T", [4, 9])
def test_lstm_depth_is_linear_in_T(T):
    lstm = nn.LSTM(10, 16, num_layers=2, batch_first=True)
    report = analyze(lstm, (torch.randn(3, T, 10),), {"input": {0: Dim("b", min=2)}})
    assert report.evaluate(b=3)["depth"] == _lstm_depth(T, 2)
    assert report.big_o["work"] == b
    # FLOPs: per step and batch row 2 * 64 * (I + H) per layer (layer 1 I = 10, layer 2 I = 16)
    assert sympy.expand(report.flops - b * T * 2 * 64 * ((10 + 16) + (16 + 16))) == 0


def test_gru_and_rnn_cells_and_sequences():
    gru = analyze(nn.GRU(8, 16), (torch.randn(5, 3, 8),), None)
    # GRU: entering costs 1 + lg 8 + bias 1 + r/z (2), n (3), h' (2) = 12, a step along time 1 + lg 16 + 8 = 13;
    # the first cell waits for both (13), then 4 more steps; + the zeros of h0
    assert gru.evaluate()["depth"] == 1 + 13 + 4 * 13
    cell = analyze(nn.LSTMCell(10, 16), (torch.randn(3, 10),), None)
    assert cell.evaluate()["depth"] == 1 + 12
    rnn = analyze(nn.RNN(10, 16, bidirectional=True, num_layers=2), (torch.randn(6, 3, 10),), None)
    # bidirectional: each layer waits for the whole reverse pass: layer 1 (I = 10, H = 16: every cell 5 + 2 + 1),
    # 6 steps; layer 2's first cell waits for its input over I = 32 (6 + 2 + 1), then 5 steps of 8
    assert rnn.evaluate()["depth"] == 1 + 6 * 8 + 9 + 5 * 8


# ---------------------------------------------------------------------------------------------
# In-place ops (export keeps them: torchvision's mobilenet_v3 uses hardswish_) cost what their functional
# twins cost: the same model written with out-of-place ops must give the same work and depth.


class InPlace(nn.Module):
    def __init__(self, inplace: bool):
        super().__init__()
        self.inplace = inplace
        self.w = nn.Parameter(torch.randn(8, 8))
        self.bias = nn.Parameter(torch.randn(8))

    def forward(self, x, idx):
        b_, n_ = x.shape[0], x.shape[1]
        y = x @ self.w                                          # [b, n, 8]
        if self.inplace:
            F.hardswish(y, inplace=True)
            y.mul_(2).add_(1)
            y.masked_fill_(y > 3, 0.0)
            torch.ops.aten.gelu_(y)
            flat = y.reshape(b_ * n_, 8)
            base = self.bias.expand(b_ * n_, 8).clone()
            base.addmm_(flat, self.w)
            base.index_add_(0, idx, flat)
            base.relu_()
            base.cumsum_(1)
            base.tril_()
            return base
        y = F.hardswish(y)
        y = y * 2 + 1
        y = y.masked_fill(y > 3, 0.0)
        y = F.gelu(y)
        flat = y.reshape(b_ * n_, 8)
        base = self.bias.expand(b_ * n_, 8).clone()
        base = torch.addmm(base, flat, self.w)
        base = base.index_add(0, idx, flat)
        base = torch.relu(base)
        base = base.cumsum(1)
        return torch.tril(base)


def test_in_place_ops_cost_what_their_functional_twins_cost():
    b_, n_ = 2, 5
    inputs = (torch.randn(b_, n_, 8), torch.randint(0, b_ * n_, (b_ * n_,)))
    shapes = {"x": {0: Dim("b", min=2), 1: Dim("n", min=2)}, "idx": {0: Dim("bn", min=4)}}
    inplace = depthscope.analyze(InPlace(True), inputs, dynamic_shapes=shapes)
    ops = {row[0] for row in inplace.op_totals}
    assert {"aten.hardswish_.default", "aten.addmm_.default", "aten.index_add_.default",
            "aten.masked_fill_.Scalar", "aten.gelu_.default", "aten.cumsum_.default", "aten.tril_.default"} <= ops, ops
    assert inplace.unmodeled == ()
    functional = depthscope.analyze(InPlace(False), inputs, dynamic_shapes=shapes)
    assert sympy.expand(inplace.work - functional.work) == 0
    assert sympy.simplify(inplace.depth - functional.depth) == 0
