"""Bytes, fused bytes and I/O per class of op, against hand counts: views, in-place ops, factories, dtypes,
higher-order ops, fusion, the tiled bounds, and the fused-against-hand-written attention of the README."""

from __future__ import annotations

import pytest
import sympy
import torch
from torch import nn
from torch._higher_order_ops.scan import scan
from torch.export import Dim

import depthscope
from depthscope import Cost, OpCall, TensorMeta
from depthscope.complexity import big_o
from depthscope.cost.tiling import call_io
from depthscope.cost.traffic import FAST_MEMORY, call_traffic, itemsize
from depthscope.symbols import size_symbol

from conftest import example

aten = torch.ops.aten
b, n, M = size_symbol("b"), size_symbol("n"), FAST_MEMORY


def meta(*shape, dtype=torch.float32, broadcast=()):
    return TensorMeta(tuple(sympy.sympify(s) for s in shape), dtype, broadcast)


@pytest.mark.parametrize("dtype, size", [(torch.float32, 4), (torch.bfloat16, 2), (torch.int64, 8), (torch.bool, 1),
                                         (torch.complex64, 8), (torch.float16, 2), (torch.uint8, 1)])
def test_dtype_sizes(dtype, size):
    assert itemsize(dtype) == size
    x = meta(b, 3, dtype=dtype)
    assert call_traffic(OpCall(aten.neg.default, (x,), {}, (x,))).total == 2 * 3 * b * size


def test_views_move_nothing_and_expanded_dims_count_once():
    x = meta(b, n, 8)
    for op, out in ((aten.view.default, meta(b * n, 8)), (aten.transpose.int, meta(b, 8, n)),
                    (aten.expand.default, meta(4, b, n, 8, broadcast=(0,))), (aten.select.int, meta(n, 8))):
        assert call_traffic(OpCall(op, (x,), {}, (out,))).total == 0
    # an add reading an expanded bias reads its storage once: b*n*8 + 8 elements in, b*n*8 out
    bias = meta(b, n, 8, broadcast=(0, 1))
    assert call_traffic(OpCall(aten.add.Tensor, (x, bias), {}, (x,))).total == 4 * (2 * 8 * b * n + 8)


def test_in_place_ops_write_the_mutated_tensor_once():
    x, y = meta(b, 16), meta(b, 16)
    inplace = call_traffic(OpCall(aten.add_.Tensor, (x, y), {}, (x,)))
    assert (inplace.read, inplace.written) == (2 * 64 * b, 64 * b)
    out = call_traffic(OpCall(aten.add.out, (x, y), {"out": meta(b, 16)}, (meta(b, 16),)))
    assert (out.read, out.written) == (2 * 64 * b, 64 * b)  # the out= tensor is written, not read


def test_factories_write_and_empty_writes_nothing():
    out = meta(b, 16)
    assert call_traffic(OpCall(aten.zeros.default, ([b, 16],), {}, (out,))).total == 64 * b
    assert call_traffic(OpCall(aten.arange.default, (b,), {}, (meta(b, dtype=torch.int64),))).total == 8 * b
    assert call_traffic(OpCall(aten.empty.memory_format, ([b, 16],), {}, (out,))).total == 0


def test_gathers_read_what_they_gather():
    table, ids = meta(50000, 64), meta(b, n, dtype=torch.int64)
    traffic = call_traffic(OpCall(aten.embedding.default, (table, ids), {}, (meta(b, n, 64),)))
    assert traffic.total == 8 * b * n + 2 * 4 * 64 * b * n  # indices, the rows gathered, the output


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(16, 16))

    def forward(self, x):
        def step(h, xt):
            h = torch.tanh(xt @ self.w + h @ self.w)
            return h, h.clone()

        return scan(step, torch.zeros(x.shape[0], 16), x, dim=1)[1]


def test_scan_body_bytes_scale_with_its_length():
    report = depthscope.analyze(Recurrent(), (torch.randn(2, 8, 16),), dynamic_shapes={"x": {1: Dim("n")}})
    rows = 2 * 16 * 4  # one [2, 16] float32 tensor
    step = 2 * (rows + 16 * 16 * 4 + rows) + 3 * rows + 2 * rows + 2 * rows  # two matmuls, add, tanh, clone
    assert sympy.expand(report.bytes - (n * step + rows)) == 0  # + the zeros it starts from


def test_a_rule_that_sets_bytes_is_kept():
    def rule(call):
        return Cost(call.out.numel, 1, bytes=7 * call.out.numel)

    report = depthscope.analyze(nn.ReLU(), (torch.randn(4, 8),), dynamic_shapes=({0: Dim("b")},),
                                rules={aten.relu.default: rule})
    assert report.bytes == 56 * b and report.io == 56 * b


class Chain(nn.Module):
    def forward(self, x):
        return torch.nn.functional.gelu(torch.relu(x) * 2).sum(-1)


def test_a_pointwise_chain_fuses_into_one_kernel():
    report = depthscope.analyze(Chain(), (torch.randn(4, 8),), dynamic_shapes=({0: Dim("b")},))
    assert report.bytes == 4 * (3 * 2 * 8 * b + 8 * b + b)  # relu, mul, gelu: 8b in and out; the sum: 8b in, b out
    assert report.bytes_fused == 4 * (8 * b + b)  # one kernel: read x, write the row sums


@pytest.fixture(scope="module")
def attention_pair():
    return depthscope.analyze_file(example("attention.py")), depthscope.analyze_file(example("attention_by_hand.py"))


def test_fused_and_hand_written_attention_same_work_different_traffic(attention_pair):
    fused, by_hand = attention_pair
    assert fused.work == by_hand.work and fused.depth == by_hand.depth
    assert fused.big_o["bytes"] == b * n and by_hand.big_o["bytes"] == b * n**2
    assert fused.big_o["io"] == b * n + b * n**2 / M and by_hand.big_o["io"] == b * n**2
    # nothing in the SDPA model fuses (linears, views, SDPA): its estimate is its unfused bytes
    assert fused.bytes_fused == fused.bytes
    assert by_hand.bytes_fused < by_hand.bytes


def test_io_tends_to_the_bytes_as_fast_memory_grows(attention_pair):
    """A tiled matmul reads each input once and writes its output once when everything fits: io -> bytes. Algorithm 1
    of FlashAttention still initialises O, l, m in HBM and reads them back once: 2 L Ev + 6 L more per head."""
    x, w = meta(b * n, 64), meta(128, 64)
    call = OpCall(aten.linear.default, (x, w), {}, (meta(b * n, 128),))
    cost = Cost(2 * b * n * 64 * 128, 1, 2 * b * n * 64 * 128, call_traffic(call).total)
    io = call_io(call, cost)
    assert sympy.limit(io, M, sympy.oo) == cost.bytes
    assert sympy.simplify(io - cost.bytes) > 0  # and above them at every finite M (Hong and Kung's re-reads)
    fused, _ = attention_pair
    sdpa = next(node for node in fused.nodes if "scaled_dot_product" in node.op)
    heads = 4 * b  # [b, 4, n, 16]: L = S = n, E = Ev = 16
    assert sympy.expand(sympy.limit(sdpa.cost.io, M, sympy.oo) - sdpa.cost.bytes - 4 * heads * (2 * n * 16 + 6 * n)) == 0


def test_decreasing_terms_in_the_fast_memory_collapse():
    assert big_o(b * n + 3 * b * n / sympy.sqrt(M)) == b * n
    assert big_o(b * n + b * n**2 / M) == b * n + b * n**2 / M


def test_with_fast_memory_substitutes_and_evaluates(attention_pair):
    fused, _ = attention_pair
    at = fused.with_fast_memory(48 * 1024)
    assert at.io.free_symbols == {b, n} and "io" not in fused.evaluate(b=2, n=64)
    value = at.evaluate(b=2, n=64)["io"]
    assert value == pytest.approx(float(fused.io.subs({M: 48 * 1024, b: 2, n: 64})))
    assert fused.evaluate(b=2, n=64, fast_memory=48 * 1024)["io"] == value
    ops = {o.op: o for o in at.ops({"b": 2, "n": 64})}
    assert ops["aten.linear.default"].flops_per_byte > 0 and not ops["aten.linear.default"].io.free_symbols - {b, n}


def test_the_fitted_engine_fits_bytes_exactly(attention_pair):
    fused, _ = attention_pair
    fitted = depthscope.analyze_file(example("attention.py"), engine="fitted")
    assert fitted.exactness == "fitted-exact"
    for part in ("bytes", "bytes_fused", "io"):
        assert sympy.expand(getattr(fitted, part) - getattr(fused, part)) == 0, part


def test_hyperparameters_fit_bytes_in_the_width(write_model):
    from test_hyper import SINGLE_HEAD

    report = depthscope.analyze_file(write_model(SINGLE_HEAD))
    d = size_symbol("d")
    assert report.fit.heldout_passed and report.big_o["bytes"] == b * n**2 + b * n * d + d**2
    ns: dict = {}
    exec(compile(SINGLE_HEAD, "head", "exec"), ns)  # noqa: S102 - the test's own model source
    at_48 = depthscope.analyze(ns["Head"](48), (torch.randn(2, 16, 48),), dynamic_shapes=ns["dynamic_shapes"])
    assert sympy.expand(report.bytes.subs(d, 48) - at_48.bytes) == 0  # 48 is between the fit's powers of two
    assert sympy.expand(report.io.subs(d, 48) - at_48.io) == 0


class _Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, y):
        return self.fn(x, y)


def _filled(x, y):
    z = x.clone()
    z.fill_(2.0)
    return z


def _copied(x, y):
    z = x.clone()
    z[:2].copy_(y[:2])
    return z


@pytest.mark.parametrize("fn, own", [
    (lambda x, y: torch.empty_like(x), 0),  # uninitialised: nothing read, nothing written
    (lambda x, y: x.new_empty((4, 8)), 0),
    (lambda x, y: torch.zeros_like(x), 128),  # x gives the shape only: the 4x8 float32 output is written
    (lambda x, y: torch.full_like(x, 3.0, dtype=torch.float16), 64),
    (_filled, 128),  # fill_ writes z without reading it
    (_copied, 64 + 64),  # copy_ reads y[:2] (64 bytes) and writes z[:2] (64), never reading z
], ids=["empty_like", "new_empty", "zeros_like", "full_like_half", "fill_", "slice_copy_"])
def test_ops_that_overwrite_or_take_a_template_do_not_read_it(fn, own):
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    report = depthscope.analyze(_Fn(fn), (x, y))
    clone = sum(n.cost.bytes for n in report.nodes if n.op.startswith("aten.clone"))
    assert report.bytes - clone == own, [(n.op, n.cost.bytes) for n in report.nodes]
