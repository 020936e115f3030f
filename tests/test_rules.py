"""Unit tests of the per-op cost rules on symbolic shapes, against hand-derived formulas.

Every rule is a pure function of an OpCall whose tensors are TensorMeta with sympy shapes, so no tensor is built
here. Each expected work / depth / FLOPs value is derived in the test from the work-depth model
(shared/BACKGROUND.md): an elementwise step is numel work at depth 1, a reduction of k values per output is a
fan-in-2 tree of depth ceil(log2 k) (written `lg(k)` below), a dot product of length k is k multiplies at
depth 1 then a tree, and FLOPs count 2 per multiply-add of the matmul family as torch.utils.flop_counter does.
"""

from __future__ import annotations

import random

import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils import flop_counter

from depthscope.cost.rules import FREE_OPS, RULES, OpCall, TensorMeta, lookup
from depthscope.cost.rules.elementwise import elementwise
from depthscope.cost.registry import unmodeled
from depthscope.complexity import big_o
from depthscope.symbols import clog2, evaluate, size_symbol

aten = torch.ops.aten

b, n, d, m, e, h, C = (size_symbol(s) for s in ("b", "n", "d", "m", "e", "h", "C"))
H, W, Ho, Wo, L, S, E, Ev, V = (size_symbol(s) for s in ("H", "W", "Ho", "Wo", "L", "S", "E", "Ev", "V"))


def lg(k):
    """ceil(log2 k): depth of a fan-in-2 tree over k values (clog2's exactness is tested at the end of this file)."""
    return clog2(k)


def T(*shape) -> TensorMeta:
    return TensorMeta(tuple(sympy.sympify(s) for s in shape))


def rule_cost(op, args, out, kwargs=None):
    """Look the op up as the engine does and apply its rule; `out` is one TensorMeta or a tuple of them."""
    rule = lookup(op)
    assert rule is not None, f"no rule for {op}"
    outputs = out if isinstance(out, tuple) else (out,)
    return rule(OpCall(op, tuple(args), dict(kwargs or {}), outputs))


_POINTS = [2, 3, 5, 7, 8, 13, 64, 100, 1000, 1025]


def same(actual, expected) -> bool:
    """Symbolically equal, or (when sympy cannot show it, e.g. ceil(log2(4x)) vs 2 + ceil(log2 x)) equal when
    evaluated exactly at many size assignments."""
    actual, expected = sympy.sympify(actual), sympy.sympify(expected)
    if sympy.expand(actual - expected) == 0:
        return True
    syms = sorted(actual.free_symbols | expected.free_symbols, key=str)
    rng = random.Random(0)
    for _ in range(25):
        sizes = {s: rng.choice(_POINTS) for s in syms}
        if evaluate(actual, sizes) != evaluate(expected, sizes):
            return False
    return True


def check(cost, work, depth, flops=0):
    assert same(cost.work, work), f"work: got {cost.work}, expected {work}"
    assert same(cost.depth, depth), f"depth: got {cost.depth}, expected {depth}"
    assert same(cost.flops, flops), f"flops: got {cost.flops}, expected {flops}"


def case(id_, *values):
    return pytest.param(*values, id=id_)


# ---------------------------------------------------------------------------------------------
# Matrix products: out elements each a dot product of length k: 2*out*k FLOPs, depth 1 (multiply) + lg(k).

MATMUL_CASES = [
    case("mm", aten.mm.default, (T(n, d), T(d, m)), {}, T(n, m),
         2 * n * m * d, 1 + lg(d), 2 * n * m * d),
    # the bias is one more elementwise add over the output: +n*m work, +1 depth, no FLOPs
    case("addmm-bias", aten.addmm.default, (T(m), T(n, d), T(d, m)), {}, T(n, m),
         2 * n * m * d + n * m, 2 + lg(d), 2 * n * m * d),
    case("bmm", aten.bmm.default, (T(b, n, d), T(b, d, m)), {}, T(b, n, m),
         2 * b * n * m * d, 1 + lg(d), 2 * b * n * m * d),
    case("baddbmm-bias", aten.baddbmm.default, (T(b, n, m), T(b, n, d), T(b, d, m)), {}, T(b, n, m),
         2 * b * n * m * d + b * n * m, 2 + lg(d), 2 * b * n * m * d),
    # addbmm also sums over the batch: each output is a dot product of length b*d
    case("addbmm-sums-batch", aten.addbmm.default, (T(n, m), T(b, n, d), T(b, d, m)), {}, T(n, m),
         2 * n * m * b * d + n * m, 2 + lg(b * d), 2 * n * m * b * d),
    case("matmul-4d-by-2d-broadcast", aten.matmul.default, (T(b, h, n, d), T(d, m)), {}, T(b, h, n, m),
         2 * b * h * n * m * d, 1 + lg(d), 2 * b * h * n * m * d),
    case("matmul-2d-by-3d-broadcast", aten.matmul.default, (T(n, d), T(b, d, m)), {}, T(b, n, m),
         2 * b * n * m * d, 1 + lg(d), 2 * b * n * m * d),
    case("matmul-vector-by-batch", aten.matmul.default, (T(d), T(b, d, m)), {}, T(b, m),
         2 * b * m * d, 1 + lg(d), 2 * b * m * d),
    case("matmul-batch-by-vector", aten.matmul.default, (T(b, n, d), T(d)), {}, T(b, n),
         2 * b * n * d, 1 + lg(d), 2 * b * n * d),
    case("mv", aten.mv.default, (T(n, d), T(d)), {}, T(n), 2 * n * d, 1 + lg(d), 2 * n * d),
    case("dot", aten.dot.default, (T(n), T(n)), {}, T(), 2 * n, 1 + lg(n), 2 * n),
    case("outer-no-sum", aten.outer.default, (T(n), T(m)), {}, T(n, m), n * m, 1, 0),
    case("linear-no-bias", aten.linear.default, (T(b, n, d), T(m, d)), {}, T(b, n, m),
         2 * b * n * m * d, 1 + lg(d), 2 * b * n * m * d),
    case("linear-bias-None", aten.linear.default, (T(b, n, d), T(m, d), None), {}, T(b, n, m),
         2 * b * n * m * d, 1 + lg(d), 2 * b * n * m * d),
    case("linear-bias-positional", aten.linear.default, (T(b, n, d), T(m, d), T(m)), {}, T(b, n, m),
         2 * b * n * m * d + b * n * m, 2 + lg(d), 2 * b * n * m * d),
    case("linear-bias-kwarg", aten.linear.default, (T(b, n, d), T(m, d)), {"bias": T(m)}, T(b, n, m),
         2 * b * n * m * d + b * n * m, 2 + lg(d), 2 * b * n * m * d),
]


@pytest.mark.parametrize("op, args, kwargs, out, work, depth, flops", MATMUL_CASES)
def test_matmul_family(op, args, kwargs, out, work, depth, flops):
    check(rule_cost(op, args, out, kwargs), work, depth, flops)


@pytest.mark.parametrize("op, args, out, formula", [
    case("mm", aten.mm.default, (T(n, d), T(d, m)), T(n, m), lambda: flop_counter.mm_flop((n, d), (d, m))),
    case("addmm", aten.addmm.default, (T(m), T(n, d), T(d, m)), T(n, m),
         lambda: flop_counter.addmm_flop((m,), (n, d), (d, m))),
    case("bmm", aten.bmm.default, (T(b, n, d), T(b, d, m)), T(b, n, m),
         lambda: flop_counter.bmm_flop((b, n, d), (b, d, m))),
    case("baddbmm", aten.baddbmm.default, (T(b, n, m), T(b, n, d), T(b, d, m)), T(b, n, m),
         lambda: flop_counter.baddbmm_flop((b, n, m), (b, n, d), (b, d, m))),
])
def test_matmul_flops_equal_flop_counter_formulas(op, args, out, formula):
    """flop_counter's own formulas accept sympy sizes: the rules' FLOPs must be the same expressions."""
    assert same(rule_cost(op, args, out).flops, formula())


# ---------------------------------------------------------------------------------------------
# einsum: letters only one operand has (and the output lacks) are summed first (a tree, no FLOPs), then the
# operands contract pairwise left to right, each pair a contraction over the letters no later operand needs.

EINSUM_CASES = [
    case("2-operand-ij,jk->ik", "ij,jk->ik", (T(n, d), T(d, m)), T(n, m),
         2 * n * m * d, 1 + lg(d), 2 * n * m * d),
    case("implicit-output-ij,jk", "ij,jk", (T(n, d), T(d, m)), T(n, m),
         2 * n * m * d, 1 + lg(d), 2 * n * m * d),
    case("batch-letters-bnd,bmd->bnm", "bnd,bmd->bnm", (T(b, n, d), T(b, m, d)), T(b, n, m),
         2 * b * n * m * d, 1 + lg(d), 2 * b * n * m * d),
    case("batch-and-heads-bhnd,bhmd->bhnm", "bhnd,bhmd->bhnm", (T(b, h, n, d), T(b, h, m, d)), T(b, h, n, m),
         2 * b * h * n * m * d, 1 + lg(d), 2 * b * h * n * m * d),
    case("ellipsis-both", "...ij,...jk->...ik", (T(b, h, n, d), T(b, h, d, m)), T(b, h, n, m),
         2 * b * h * n * m * d, 1 + lg(d), 2 * b * h * n * m * d),
    case("ellipsis-broadcast", "...ij,jk->...ik", (T(b, h, n, d), T(d, m)), T(b, h, n, m),
         2 * b * h * n * m * d, 1 + lg(d), 2 * b * h * n * m * d),
    case("ellipsis-spaces", "... i j , ... j k -> ... i k", (T(b, n, d), T(b, d, m)), T(b, n, m),
         2 * b * n * m * d, 1 + lg(d), 2 * b * n * m * d),
    # (ij,jk) over j: n*m outputs of length d; then (ik,kl) over k: n*e outputs of length m, after the first
    case("3-operand-chain", "ij,jk,kl->il", (T(n, d), T(d, m), T(m, e)), T(n, e),
         2 * n * m * d + 2 * n * e * m, (1 + lg(d)) + (1 + lg(m)), 2 * n * m * d + 2 * n * e * m),
    case("hadamard-no-contraction", "ij,ij->ij", (T(n, d), T(n, d)), T(n, d), n * d, 1, 0),
    case("outer-product", "i,j->ij", (T(n), T(m)), T(n, m), n * m, 1, 0),
    # n is only in x and not in the output: torch sums it first (b*n*d reads, depth lg n), then bd,de->be
    case("lone-letter-summed-first", "bnd,de->be", (T(b, n, d), T(d, e)), T(b, e),
         b * n * d + 2 * b * d * e, lg(n) + 1 + lg(d), 2 * b * d * e),
    case("single-operand-sum", "bnd->bd", (T(b, n, d),), T(b, d), b * n * d, lg(n), 0),
    case("single-operand-permute-is-a-view", "ij->ji", (T(n, d),), T(d, n), 0, 0, 0),
]


@pytest.mark.parametrize("equation, operands, out, work, depth, flops", EINSUM_CASES)
def test_einsum(equation, operands, out, work, depth, flops):
    check(rule_cost(aten.einsum.default, (equation, list(operands)), out), work, depth, flops)


# ---------------------------------------------------------------------------------------------
# Convolution: FLOPs = 2 * out * (C_in/groups) * prod(kernel) (transposed: over the input's spatial extent);
# each output sums its fan-in (C_in/groups) * prod(kernel) products: depth 1 + lg(fan-in).

CONV_CASES = [
    # 8 -> 16 channels, groups 4: weight [16, 2, 3, 3], fan-in 2*9 = 18, lg 18 = 5
    case("conv2d-groups", aten.conv2d.default, (T(b, 8, H, W), T(16, 2, 3, 3), None, [2, 2], [1, 1], [1, 1], 4),
         T(b, 16, Ho, Wo), False, 2 * b * 16 * Ho * Wo * 18, 1 + 5, 0),
    case("conv2d-bias", aten.conv2d.default, (T(b, 8, H, W), T(16, 8, 3, 3), T(16)), T(b, 16, Ho, Wo), False,
         2 * b * 16 * Ho * Wo * 72 + b * 16 * Ho * Wo, 1 + 7 + 1, 0),
    case("convolution-groups", aten.convolution.default,
         (T(b, 8, H, W), T(16, 2, 3, 3), None, [1, 1], [1, 1], [1, 1], False, [0, 0], 4),
         T(b, 16, Ho, Wo), False, 2 * b * 16 * Ho * Wo * 18, 1 + 5, 0),
    case("conv1d-length", aten.conv1d.default, (T(b, 3, n), T(5, 3, 3)), T(b, 5, n - 2), False,
         2 * b * 5 * (n - 2) * 9, 1 + 4, 0),
    # transposed: weight [C_in=8, C_out/groups=3, 4, 4], groups 2 -> 6 outputs; every input point is scattered
    # through the kernel: 2 * b*H*W * 8*3*16 FLOPs; an output gathers at most (8/2)*16 = 64 products: lg 64 = 6
    case("conv_transpose2d-groups", aten.conv_transpose2d.input,
         (T(b, 8, H, W), T(8, 3, 4, 4), None, [2, 2], [1, 1], [0, 0], 2), T(b, 6, Ho, Wo), True,
         2 * b * H * W * 8 * 3 * 16, 1 + 6, 0),
    case("convolution-transposed", aten.convolution.default,
         (T(b, 8, H, W), T(8, 3, 4, 4), None, [2, 2], [1, 1], [1, 1], True, [0, 0], 2),
         T(b, 6, Ho, Wo), True, 2 * b * H * W * 8 * 3 * 16, 1 + 6, 0),
    case("conv_transpose1d-bias", aten.conv_transpose1d.default, (T(b, 4, n), T(4, 5, 3), T(5)),
         T(b, 5, m), True, 2 * b * n * 4 * 5 * 3 + b * 5 * m, 1 + 4 + 1, 0),
]


@pytest.mark.parametrize("op, args, out, transposed, work, depth, _", CONV_CASES)
def test_convolution(op, args, out, transposed, work, depth, _):
    x, w = args[0], args[1]
    cost = rule_cost(op, args, out)
    reference = flop_counter.conv_flop_count(list(x.shape), list(w.shape), list(out.shape), transposed=transposed)
    check(cost, work, depth, reference)


# ---------------------------------------------------------------------------------------------
# Scaled dot-product attention, B = batch dims of q, L queries, S keys, E (q, k) and Ev (v) head dims.
# Depth along the math path:  Q K^T: 1 + lg(E) (multiply, tree over E)
#                             * scale: 1
#                             [+ mask or causal fill: 1]
#                             softmax over S: 2 lg(S) + 3 (max tree, subtract, exp, sum tree, divide)
#                             [dropout: mask draw and multiply, 2]
#                             P V: 1 + lg(S) (multiply, tree over S)
# plain total: lg(E) + 3 lg(S) + 6. Work: 2BLSE + BLS (scale) + 5BLS (softmax) + 2BLS*Ev, +BLS masked,
# +2BLS with dropout. FLOPs only the two products: 2BLS(E + Ev), flop_counter's sdpa_flop_count.

_BLS = b * h * L * S
_PLAIN_WORK = 2 * _BLS * E + _BLS + 5 * _BLS + 2 * _BLS * Ev
_PLAIN_DEPTH = (1 + lg(E)) + 1 + (2 * lg(S) + 3) + (1 + lg(S))
_SDPA_FLOPS = 2 * _BLS * E + 2 * _BLS * Ev
_Q, _K, _V, _O = T(b, h, L, E), T(b, h, S, E), T(b, h, S, Ev), T(b, h, L, Ev)

SDPA_CASES = [
    case("plain", aten.scaled_dot_product_attention.default, (_Q, _K, _V), {},
         _PLAIN_WORK, _PLAIN_DEPTH),
    case("causal", aten.scaled_dot_product_attention.default, (_Q, _K, _V), {"is_causal": True},
         _PLAIN_WORK + _BLS, _PLAIN_DEPTH + 1),
    case("attn-mask-positional", aten.scaled_dot_product_attention.default, (_Q, _K, _V, T(L, S)), {},
         _PLAIN_WORK + _BLS, _PLAIN_DEPTH + 1),
    case("attn-mask-kwarg", aten.scaled_dot_product_attention.default, (_Q, _K, _V), {"attn_mask": T(b, 1, L, S)},
         _PLAIN_WORK + _BLS, _PLAIN_DEPTH + 1),
    case("dropout", aten.scaled_dot_product_attention.default, (_Q, _K, _V, None, 0.1), {},
         _PLAIN_WORK + 2 * _BLS, _PLAIN_DEPTH + 2),
    case("math-overload-causal", aten._scaled_dot_product_attention_math.default, (_Q, _K, _V, None, 0.0, True), {},
         _PLAIN_WORK + _BLS, _PLAIN_DEPTH + 1),
    case("flash-cpu-plain", aten._scaled_dot_product_flash_attention_for_cpu.default, (_Q, _K, _V), {},
         _PLAIN_WORK, _PLAIN_DEPTH),
    case("flash-cpu-causal", aten._scaled_dot_product_flash_attention_for_cpu.default, (_Q, _K, _V, 0.0, True), {},
         _PLAIN_WORK + _BLS, _PLAIN_DEPTH + 1),
    case("efficient-bias", aten._scaled_dot_product_efficient_attention.default, (_Q, _K, _V, T(b, h, L, S), False),
         {}, _PLAIN_WORK + _BLS, _PLAIN_DEPTH + 1),
]


@pytest.mark.parametrize("op, args, kwargs, work, depth", SDPA_CASES)
def test_sdpa(op, args, kwargs, work, depth):
    check(rule_cost(op, args, _O, kwargs), work, depth, _SDPA_FLOPS)


def test_sdpa_plain_depth_is_lgE_plus_3lgS_plus_6():
    cost = rule_cost(aten.scaled_dot_product_attention.default, (_Q, _K, _V), _O)
    assert same(cost.depth, lg(E) + 3 * lg(S) + 6)
    assert big_o(cost.depth) == sympy.log(E) + sympy.log(S)


def test_sdpa_grouped_query_attention_counts_query_heads():
    """GQA: 8 query heads over 2 key/value heads; every query head still does its own products."""
    q, k, v = T(b, 8, L, 64), T(b, 2, S, 64), T(b, 2, S, 32)
    cost = rule_cost(aten.scaled_dot_product_attention.default, (q, k, v), T(b, 8, L, 32), {"enable_gqa": True})
    bls = b * 8 * L * S
    check(cost, 2 * bls * 64 + bls + 5 * bls + 2 * bls * 32, (1 + 6) + 1 + (2 * lg(S) + 3) + (1 + lg(S)),
          flop_counter.sdpa_flop_count(q.shape, k.shape, v.shape))


# ---------------------------------------------------------------------------------------------
# Softmax family over rows of k: max tree, subtract, exp, sum tree, divide -> work 5 numel, depth 2 lg(k) + 3;
# log_softmax: log of each row sum and a subtract instead of the divide -> 5 numel + rows, 2 lg(k) + 4.

SOFTMAX_CASES = [
    case("_softmax-last", aten._softmax.default, (T(b, n, m), -1, False), T(b, n, m),
         5 * b * n * m, 2 * lg(m) + 3),
    case("softmax.int-dim1", aten.softmax.int, (T(b, n, m), 1), T(b, n, m), 5 * b * n * m, 2 * lg(n) + 3),
    case("_log_softmax-last", aten._log_softmax.default, (T(b, n, m), -1, False), T(b, n, m),
         5 * b * n * m + b * n, 2 * lg(m) + 4),
    case("log_softmax.int-dim0", aten.log_softmax.int, (T(b, n, m), 0), T(b, n, m),
         5 * b * n * m + n * m, 2 * lg(b) + 4),
]


@pytest.mark.parametrize("op, args, out, work, depth", SOFTMAX_CASES)
def test_softmax(op, args, out, work, depth):
    check(rule_cost(op, args, out), work, depth, 0)


# ---------------------------------------------------------------------------------------------
# Normalisations over rows of k values (N = numel, R = N/k rows):
#   mean: tree (N, lg k) + divide (R, 1); x - mean, square (2N, 2); variance: tree (N, lg k) + divide (R, 1);
#   + eps, rsqrt (2R, 2); times rstd (N, 1)  ->  work 5N + 4R, depth 2 lg(k) + 7; each affine step +N, +1.

def _standardize(N, k, affine=0):
    R = sympy.cancel(N / k)
    return 5 * N + 4 * R + affine * N, 2 * lg(k) + 7 + affine


NORM_CASES = [
    case("layer_norm-no-affine", aten.layer_norm.default, (T(b, n, d), [d]), T(b, n, d),
         *_standardize(b * n * d, d)),
    case("layer_norm-weight", aten.layer_norm.default, (T(b, n, d), [d], T(d)), T(b, n, d),
         *_standardize(b * n * d, d, 1)),
    case("layer_norm-weight-bias", aten.layer_norm.default, (T(b, n, d), [d], T(d), T(d)), T(b, n, d),
         *_standardize(b * n * d, d, 2)),
    case("layer_norm-two-dims", aten.layer_norm.default, (T(b, n, d), [n, d], T(n, d), T(n, d)), T(b, n, d),
         *_standardize(b * n * d, n * d, 2)),
    case("native_layer_norm", aten.native_layer_norm.default, (T(b, n, d), [d], T(d), T(d), 1e-5),
         (T(b, n, d), T(b, n, 1), T(b, n, 1)), *_standardize(b * n * d, d, 2)),
    # train: statistics per channel over b*H*W values
    case("batch_norm-train", aten.batch_norm.default,
         (T(b, 16, H, W), T(16), T(16), T(16), T(16), True, 0.1, 1e-5, False), T(b, 16, H, W),
         *_standardize(16 * b * H * W, b * H * W, 2)),
    case("_native_batch_norm_legit-train", aten._native_batch_norm_legit.default,
         (T(b, 16, H, W), None, None, T(16), T(16), True, 0.1, 1e-5), (T(b, 16, H, W), T(16), T(16)),
         *_standardize(16 * b * H * W, b * H * W, 0)),
    # eval: running stats fold into scale and shift per channel (+eps, rsqrt, *weight; mean*scale, bias-:
    # 5C work, depth 4), then x * scale + shift (2N, depth 2)
    case("batch_norm-eval", aten.batch_norm.default,
         (T(b, 16, H, W), T(16), T(16), T(16), T(16), False, 0.1, 1e-5, False), T(b, 16, H, W),
         5 * 16 + 2 * 16 * b * H * W, 4 + 2),
    case("_native_batch_norm_legit_no_training", aten._native_batch_norm_legit_no_training.default,
         (T(b, 16, H, W), T(16), T(16), T(16), T(16), 0.1, 1e-5), (T(b, 16, H, W), T(0), T(0)),
         5 * 16 + 2 * 16 * b * H * W, 4 + 2),
    case("_native_batch_norm_legit-training-False", aten._native_batch_norm_legit.default,
         (T(b, 16, H, W), T(16), T(16), T(16), T(16), False, 0.1, 1e-5), (T(b, 16, H, W), T(0), T(0)),
         5 * 16 + 2 * 16 * b * H * W, 4 + 2),
    # 32 channels in 8 groups: each of the b*8 rows has 4*H*W values
    case("group_norm-affine", aten.group_norm.default, (T(b, 32, H, W), 8, T(32), T(32)), T(b, 32, H, W),
         *_standardize(32 * b * H * W, 4 * H * W, 2)),
    case("group_norm-no-affine", aten.group_norm.default, (T(b, 32, H, W), 8), T(b, 32, H, W),
         *_standardize(32 * b * H * W, 4 * H * W, 0)),
    case("native_group_norm", aten.native_group_norm.default,
         (T(b, 32, H, W), T(32), T(32), b, 32, H * W, 8, 1e-5), (T(b, 32, H, W), T(b, 8), T(b, 8)),
         *_standardize(32 * b * H * W, 4 * H * W, 2)),
]


@pytest.mark.parametrize("op, args, out, work, depth", NORM_CASES)
def test_normalisation(op, args, out, work, depth):
    check(rule_cost(op, args, out), work, depth, 0)


def test_layer_norm_depth_is_2lgk_plus_7():
    cost = rule_cost(aten.layer_norm.default, (T(b, n, d), [d]), T(b, n, d))
    assert same(cost.depth, 2 * lg(d) + 7)


# ---------------------------------------------------------------------------------------------
# Reductions: work numel(input), depth lg(k) for k values per output; mean adds a divide per output.

REDUCE_CASES = [
    case("sum-last-dim", aten.sum.dim_IntList, (T(b, n, d), [-1]), T(b, n), b * n * d, lg(d)),
    case("sum-two-dims", aten.sum.dim_IntList, (T(b, n, d), [1, 2], True), T(b, 1, 1), b * n * d, lg(n * d)),
    case("sum-all", aten.sum.default, (T(b, n, d),), T(), b * n * d, lg(b * n * d)),
    case("mean-last-keepdim", aten.mean.dim, (T(b, n, d), [-1], True), T(b, n, 1), b * n * d + b * n, lg(d) + 1),
    case("mean-all", aten.mean.default, (T(b, n, d),), T(), b * n * d + 1, lg(b * n * d) + 1),
    case("amax-dim1", aten.amax.default, (T(b, n, d), [1]), T(b, d), b * n * d, lg(n)),
    case("amax-all-by-default", aten.amax.default, (T(b, n, d),), T(), b * n * d, lg(b * n * d)),
    case("max.dim", aten.max.dim, (T(b, n, d), 2), (T(b, n), T(b, n)), b * n * d, lg(d)),
    case("max-all", aten.max.default, (T(b, n),), T(), b * n, lg(b * n)),
    case("max.other-is-elementwise", aten.max.other, (T(b, n), T(b, n)), T(b, n), b * n, 1),
    case("argmax-all", aten.argmax.default, (T(b, n),), T(), b * n, lg(b * n)),
    case("prod-dim", aten.prod.dim_int, (T(b, n), 1), T(b), b * n, lg(n)),
    # var: mean (tree + divide), subtract and square (2 numel, 2), sum tree, divide
    case("var-last-dim", aten.var.correction, (T(b, n, d), [-1]), T(b, n),
         4 * b * n * d + 2 * b * n, 2 * lg(d) + 4),
    case("var-all", aten.var.correction, (T(b, n, d),), T(), 4 * b * n * d + 2, 2 * lg(b * n * d) + 4),
    case("std-last-dim-adds-sqrt", aten.std.correction, (T(b, n, d), [-1]), T(b, n),
         4 * b * n * d + 3 * b * n, 2 * lg(d) + 5),
    # Blelloch scan: up-sweep and down-sweep trees
    case("cumsum-dim1", aten.cumsum.default, (T(b, n, d), 1), T(b, n, d), 2 * b * n * d, 2 * lg(n)),
    case("cumsum-last", aten.cumsum.default, (T(b, n, d), -1), T(b, n, d), 2 * b * n * d, 2 * lg(d)),
]


@pytest.mark.parametrize("op, args, out, work, depth", REDUCE_CASES)
def test_reduction(op, args, out, work, depth):
    check(rule_cost(op, args, out), work, depth, 0)


# ---------------------------------------------------------------------------------------------
# Gathers: one independent move per output element, depth 1.

GATHER_CASES = [
    case("embedding", aten.embedding.default, (T(V, d), T(b, n)), T(b, n, d), b * n * d),
    case("gather", aten.gather.default, (T(b, n), 1, T(b, m)), T(b, m), b * m),
    case("index.Tensor", aten.index.Tensor, (T(V, d), [T(m)]), T(m, d), m * d),
    case("index_select", aten.index_select.default, (T(V, d), 0, T(m)), T(m, d), m * d),
]


@pytest.mark.parametrize("op, args, out, work", GATHER_CASES)
def test_gather_depth_one(op, args, out, work):
    check(rule_cost(op, args, out), work, 1, 0)


# ---------------------------------------------------------------------------------------------
# Pooling: every output reduces its window with a tree (average adds a divide per output).

_OUT = b * C * Ho * Wo

POOL_CASES = [
    case("max_pool2d-3x3", aten.max_pool2d.default, (T(b, C, H, W), [3, 3], [2, 2]), T(b, C, Ho, Wo),
         9 * _OUT, lg(9)),
    case("max_pool2d-one-int-kernel", aten.max_pool2d.default, (T(b, C, H, W), [2]), T(b, C, Ho, Wo),
         4 * _OUT, 2),
    case("max_pool2d_with_indices", aten.max_pool2d_with_indices.default, (T(b, C, H, W), [3, 3]),
         (T(b, C, Ho, Wo), T(b, C, Ho, Wo)), 9 * _OUT, 4),
    case("max_pool1d", aten.max_pool1d.default, (T(b, C, n), [3]), T(b, C, m), 3 * b * C * m, 2),
    case("avg_pool2d-2x2", aten.avg_pool2d.default, (T(b, C, H, W), [2, 2]), T(b, C, Ho, Wo),
         4 * _OUT + _OUT, 2 + 1),
    # global average pooling: one tree over all H*W values per channel, then a divide
    case("adaptive_avg_pool2d-global", aten.adaptive_avg_pool2d.default, (T(b, C, H, W), [1, 1]), T(b, C, 1, 1),
         b * C * H * W + b * C, lg(H * W) + 1),
    case("_adaptive_avg_pool2d-global", aten._adaptive_avg_pool2d.default, (T(b, C, H, W), [1, 1]),
         T(b, C, 1, 1), b * C * H * W + b * C, lg(H * W) + 1),
    case("adaptive_avg_pool2d-divides", aten.adaptive_avg_pool2d.default, (T(b, C, 8, 12), [2, 3]),
         T(b, C, 2, 3), b * C * 6 * 16 + b * C * 6, lg(16) + 1),
    # in=5 -> out=3 pools [0,2), [1,4), [3,5): lengths 2, 3, 2 (sum 7, deepest tree over 3 values)
    case("adaptive_avg_pool1d-overlapping-windows", aten.adaptive_avg_pool1d.default, (T(b, C, 5), [3]),
         T(b, C, 3), b * C * 7 + b * C * 3, lg(3) + 1),
    case("adaptive_max_pool2d-global", aten.adaptive_max_pool2d.default, (T(b, C, H, W), [1, 1]),
         (T(b, C, 1, 1), T(b, C, 1, 1)), b * C * H * W, lg(H * W)),
]


@pytest.mark.parametrize("op, args, out, work, depth", POOL_CASES)
def test_pooling(op, args, out, work, depth):
    check(rule_cost(op, args, out), work, depth, 0)


def test_global_pooling_depth_is_log_of_spatial_extent():
    """Global pooling over H*W: depth ceil(log2(H*W)) + 1, big-O log(H) + log(W) (not log(H*W) read as one)."""
    cost = rule_cost(aten.adaptive_avg_pool2d.default, (T(b, C, H, W), [1, 1]), T(b, C, 1, 1))
    assert same(cost.depth, lg(H * W) + 1)
    assert big_o(cost.depth) == sympy.log(H) + sympy.log(W)
    assert evaluate(cost.depth, {H: 7, W: 9}) == 6 + 1  # 63 values: a tree of depth 6
    # the same reduction written as a mean over the two spatial dims costs the same depth
    mean = rule_cost(aten.mean.dim, (T(b, C, H, W), [-1, -2], True), T(b, C, 1, 1))
    assert same(mean.depth, cost.depth)


# ---------------------------------------------------------------------------------------------
# Copies (pad, cat, clone): every output element written once, depth 1. Views: no work, no depth.

COPY_CASES = [
    case("constant_pad_nd", aten.constant_pad_nd.default, (T(b, n), [1, 2]), T(b, n + 3), b * (n + 3)),
    case("pad-reflect", aten.pad.default, (T(b, C, n), [2, 2], "reflect"), T(b, C, n + 4), b * C * (n + 4)),
    case("cat", aten.cat.default, ([T(b, n), T(b, m)], 1), T(b, n + m), b * (n + m)),
    case("stack", aten.stack.default, ([T(b, n), T(b, n), T(b, n)], 0), T(3, b, n), 3 * b * n),
    case("clone", aten.clone.default, (T(b, n),), T(b, n), b * n),
]


@pytest.mark.parametrize("op, args, out, work", COPY_CASES)
def test_copy_depth_one(op, args, out, work):
    check(rule_cost(op, args, out), work, 1, 0)


VIEW_CASES = [
    case("view", aten.view.default, (T(b, n, d), [b, n * d]), T(b, n * d)),
    case("_unsafe_view", aten._unsafe_view.default, (T(b, n, d), [b * n, d]), T(b * n, d)),
    case("reshape", aten.reshape.default, (T(b, n, d), [b, n * d]), T(b, n * d)),
    case("permute", aten.permute.default, (T(b, n, d), [2, 0, 1]), T(d, b, n)),
    case("transpose", aten.transpose.int, (T(b, n, d), 1, 2), T(b, d, n)),
    case("t", aten.t.default, (T(n, d),), T(d, n)),
    case("expand", aten.expand.default, (T(1, n, d), [b, n, d]), T(b, n, d)),
    case("unsqueeze", aten.unsqueeze.default, (T(n, d), 0), T(1, n, d)),
    case("squeeze", aten.squeeze.dim, (T(1, n, d), 0), T(n, d)),
    case("slice", aten.slice.Tensor, (T(b, n), 1, 0, 4), T(b, 4)),
    case("select", aten.select.int, (T(b, n), 0, 0), T(n)),
    case("flatten", aten.flatten.using_ints, (T(b, n, d), 1), T(b, n * d)),
    case("detach", aten.detach.default, (T(b, n),), T(b, n)),
    case("alias", aten.alias.default, (T(b, n),), T(b, n)),
]


@pytest.mark.parametrize("op, args, out", VIEW_CASES)
def test_views_are_free(op, args, out):
    check(rule_cost(op, args, out), 0, 0, 0)
    assert op in FREE_OPS


# ---------------------------------------------------------------------------------------------
# Elementwise: numel(out) work, depth 1, whether registered or found through torch's pointwise tag.

ELEMENTWISE_CASES = [
    case("add.Tensor-broadcast", aten.add.Tensor, (T(b, n, d), T(d)), T(b, n, d), True),
    case("mul.Tensor", aten.mul.Tensor, (T(b, n, d), T(b, n, d)), T(b, n, d), True),
    case("mul.Scalar", aten.mul.Scalar, (T(b, n, d), 2.0), T(b, n, d), True),
    case("exp", aten.exp.default, (T(b, n, d),), T(b, n, d), True),
    case("rsqrt", aten.rsqrt.default, (T(b, n, d),), T(b, n, d), True),
    case("gelu", aten.gelu.default, (T(b, n, d),), T(b, n, d), None),
    case("relu", aten.relu.default, (T(b, n, d),), T(b, n, d), None),
    case("where.self", aten.where.self, (T(b, n, d), T(b, n, d), T(d)), T(b, n, d), None),
]


@pytest.mark.parametrize("op, args, out, by_tag", ELEMENTWISE_CASES)
def test_elementwise(op, args, out, by_tag):
    check(rule_cost(op, args, out), b * n * d, 1, 0)
    if by_tag:
        assert op not in RULES and torch.Tag.pointwise in op.tags
        assert lookup(op) is elementwise


DROPOUT_CASES = [
    # training: draw a mask, multiply (2 numel, depth 2); eval or p = 0: the identity
    case("dropout-train", aten.dropout.default, (T(b, n), 0.1, True), 2 * b * n, 2),
    case("dropout-eval", aten.dropout.default, (T(b, n), 0.1, False), 0, 0),
    case("dropout-p0", aten.dropout.default, (T(b, n), 0.0, True), 0, 0),
    case("native_dropout-train", aten.native_dropout.default, (T(b, n), 0.1, True), 2 * b * n, 2),
    case("native_dropout-eval", aten.native_dropout.default, (T(b, n), 0.1, False), 0, 0),
    case("feature_dropout-train", aten.feature_dropout.default, (T(b, n), 0.5, True), 2 * b * n, 2),
]


@pytest.mark.parametrize("op, args, work, depth", DROPOUT_CASES)
def test_dropout(op, args, work, depth):
    check(rule_cost(op, args, (T(b, n), T(b, n))), work, depth, 0)


# ---------------------------------------------------------------------------------------------
# The unmodeled default: one operation per output element (all outputs), depth 1; reported, never silent.

_lib = torch.library.Library("depthscope_test_rules", "DEF")  # kept alive: the ops live while it does
_lib.define("blob(Tensor x) -> (Tensor, Tensor)")
_lib.define("nothing(Tensor x) -> ()")


def test_op_without_rule_has_no_lookup():
    assert lookup(torch.ops.depthscope_test_rules.blob.default) is None


def test_unmodeled_default_counts_every_output():
    call = OpCall(torch.ops.depthscope_test_rules.blob.default, (T(b, n, d),), {}, (T(b, n), T(b, n, d)))
    check(unmodeled(call), b * n + b * n * d, 1, 0)


def test_unmodeled_default_without_outputs_is_one_step():
    call = OpCall(torch.ops.depthscope_test_rules.nothing.default, (T(b, n),), {}, ())
    check(unmodeled(call), 1, 1, 0)


# ---------------------------------------------------------------------------------------------
# symbols: clog2 exactness, evaluate, big_o.

@pytest.mark.parametrize("k, expected", [
    case("0", 0, 0), case("1", 1, 0), case("2", 2, 1), case("3", 3, 2), case("4", 4, 2), case("5", 5, 3),
    case("1023", 1023, 10), case("1024", 1024, 10), case("1025", 1025, 11),
    case("2**60", 2**60, 60), case("2**60+1", 2**60 + 1, 61), case("2**60-1", 2**60 - 1, 60),
    case("3*2**70", 3 * 2**70, 72),
])
def test_clog2_integers_exact(k, expected):
    got = clog2(k)
    assert got.is_Integer and int(got) == expected


@pytest.mark.parametrize("k, expected", [
    case("2n", 2 * n, 1 + clog2(n)),
    case("8nd", 8 * n * d, 3 + clog2(n * d)),
    case("12n", 12 * n, 2 + clog2(3 * n)),
    case("n", n, sympy.ceiling(sympy.log(n) / sympy.log(2))),
])
def test_clog2_takes_powers_of_two_out(k, expected):
    assert sympy.expand(clog2(k) - expected) == 0


@settings(max_examples=200, deadline=None)
@given(c=st.integers(1, 64), v=st.integers(1, 2**80))
def test_clog2_symbolic_evaluates_exactly(c, v):
    """ceil(log2(c*n)) at n = v equals the integer bit length, even where floats would round (2**k +- 1)."""
    assert evaluate(clog2(c * n), {n: v}) == (c * v - 1).bit_length()


@pytest.mark.parametrize("v", [2**k + dv for k in (1, 10, 52, 53, 60, 100) for dv in (-1, 0, 1)],
                         ids=lambda v: f"n={v}")
def test_clog2_evaluates_exactly_near_powers_of_two(v):
    assert evaluate(clog2(n), {n: v}) == (v - 1).bit_length()
    assert evaluate(clog2(n * d), {n: v, d: 3}) == (3 * v - 1).bit_length()


@pytest.mark.parametrize("expr, sizes, expected", [
    case("polynomial", 3 * b * n**2 + 5 * b * n * d, {b: 2, n: 8, d: 16}, 3 * 2 * 64 + 5 * 2 * 8 * 16),
    case("clog2-plus-const", clog2(n) + 3, {n: 1000}, 13),
    case("max-left", sympy.Max(clog2(n) + 3, 2 * clog2(d)), {n: 1000, d: 64}, 13),
    case("max-right", sympy.Max(clog2(n) + 3, 2 * clog2(d)), {n: 8, d: 1024}, 20),
    case("clog2-product", clog2(n * d), {n: 2**30, d: 2**30 + 1}, 61),
    case("huge", n**3 + clog2(n), {n: 2**60 + 1}, (2**60 + 1) ** 3 + 61),
])
def test_evaluate(expr, sizes, expected):
    got = evaluate(expr, sizes)
    assert got.is_Integer and int(got) == expected


@pytest.mark.parametrize("expr, expected", [
    case("coefficients-dropped", 3 * b * n**2 + 5 * b * n * d, b * n**2 + b * n * d),
    case("max-of-logs", sympy.Max(clog2(n) + 3, 2 * clog2(d)), sympy.log(d) + sympy.log(n)),
    case("constant", sympy.Integer(7), 1),
    case("constant-clog2", clog2(1024) + 2, 1),
    case("nlogn-beats-n", n * sympy.log(n) + 5 * n, n * sympy.log(n)),
    case("n2-beats-nlogn", n**2 + 3 * n * sympy.log(n), n**2),
    case("n-beats-const", n + 100, n),
    case("clog2-of-product", clog2(n * d), sympy.log(n) + sympy.log(d)),
    case("clog2-of-power-of-two-multiple", 2 * clog2(4 * H * W) + 1, sympy.log(H) + sympy.log(W)),
    case("incomparable-kept", n * d**2 + d * n**2 + n * d, n * d**2 + d * n**2),
    case("linear-beats-log", n + clog2(n), n),
    # log(2) inside ceil(log(n)/log(2)) is a constant: it must not be loosened into log(1) = 0
    case("n-times-clog2", 15 * n * clog2(n) + 3 * n, n * sympy.log(n)),
    case("bitonic-work", sympy.floor(n / 2) * clog2(n) * (clog2(n) + 1) / 2, n * sympy.log(n) ** 2),
    case("clog2-squared", clog2(n) ** 2 / 2 + clog2(n) / 2, sympy.log(n) ** 2),
])
def test_big_o(expr, expected):
    assert sympy.expand(big_o(expr) - expected) == 0, big_o(expr)


_STRIDED = (sympy.floor(H / 2 + sympy.Rational(1, 2)) + 1) * (sympy.floor(W / 2 + sympy.Rational(1, 2)) + 1)


@pytest.mark.parametrize("expr, expected", [
    case("log-of-shifted-size", clog2(n - 2), sympy.log(n)),
    case("log-of-n-and-n+1", clog2(3 * n) + 2 * clog2(n + 1), sympy.log(n)),
    case("log-of-strided-conv-output", clog2(_STRIDED) + 19, sympy.log(H) + sympy.log(W)),
])
def test_big_o_log_of_affine_size(expr, expected):
    assert sympy.expand(big_o(expr) - expected) == 0, big_o(expr)


# =============================================================================================
# Sorting, selection, compaction, FFT, distances, resampling, recurrences, backward ops, losses.

P, R, M, I, G, Tn, K = (size_symbol(s) for s in ("P", "R", "M", "I", "G", "Tn", "K"))


def bitonic(rows, k):
    """Batcher's bitonic network on k keys: L(L+1)/2 stages (L = lg k) of floor(k/2) compare-exchanges."""
    stages = lg(k) * (lg(k) + 1) / 2
    return rows * sympy.floor(sympy.S(k) / 2) * stages, stages


# ---------------------------------------------------------------------------------------------
# Sorting: every sorted row of k keys is a bitonic network; topk/kthvalue/median/msort sort the row.

SORT_CASES = [
    case("sort-last-dim", aten.sort.default, (T(b, n),), {}, (T(b, n), T(b, n)), *bitonic(b, n)),
    case("sort-dim0", aten.sort.default, (T(n, b), 0), {}, (T(n, b), T(n, b)), *bitonic(b, n)),
    case("sort.stable-kwarg-dim", aten.sort.stable, (T(n, b),), {"stable": True, "dim": 0}, (T(n, b), T(n, b)),
         *bitonic(b, n)),
    case("argsort", aten.argsort.default, (T(b, h, n),), {}, T(b, h, n), *bitonic(b * h, n)),
    case("msort-dim0", aten.msort.default, (T(n, b),), {}, T(n, b), *bitonic(b, n)),
    case("topk-sorts-the-row", aten.topk.default, (T(b, n), 5), {}, (T(b, 5), T(b, 5)), *bitonic(b, n)),
    case("kthvalue", aten.kthvalue.default, (T(b, n), 3, -1), {}, (T(b), T(b)), *bitonic(b, n)),
    case("median-all-elements", aten.median.default, (T(b, n),), {}, T(), *bitonic(1, b * n)),
    case("median.dim", aten.median.dim, (T(b, n), 1), {}, (T(b), T(b)), *bitonic(b, n)),
    case("nanmedian.dim", aten.nanmedian.dim, (T(n, b), 0), {}, (T(b), T(b)), *bitonic(b, n)),
    # 8 keys: Batcher's network has 24 comparators in 6 stages; 16 keys: 80 in 10
    case("sort-8-keys", aten.sort.default, (T(3, 8),), {}, (T(3, 8), T(3, 8)), 3 * 24, 6),
    case("sort-16-keys", aten.sort.default, (T(16),), {}, (T(16), T(16)), 80, 10),
    case("sort-1-key", aten.sort.default, (T(b, 1),), {}, (T(b, 1), T(b, 1)), 0, 0),
]


@pytest.mark.parametrize("op, args, kwargs, out, work, depth", SORT_CASES)
def test_sorting(op, args, kwargs, out, work, depth):
    check(rule_cost(op, args, out, kwargs), work, depth, 0)


def test_sort_big_o_is_log_squared_depth_n_log_squared_work_per_row():
    cost = rule_cost(aten.sort.default, (T(b, n),), (T(b, n), T(b, n)))
    assert big_o(cost.depth) == sympy.log(n) ** 2
    assert big_o(cost.work) == b * n * sympy.log(n) ** 2


def test_randperm_sorts_random_keys():
    # draw n keys (n, depth 1), then one bitonic sort of n
    work, depth = bitonic(1, n)
    check(rule_cost(aten.randperm.default, (n,), T(n)), n + work, 1 + depth, 0)


def test_mode_sorts_then_counts_runs():
    # sort, flag run starts (N, 1), run lengths by a scan (2N, 2 lg n), argmax of the counts (N, lg n)
    work, depth = bitonic(b, n)
    N = b * n
    check(rule_cost(aten.mode.default, (T(b, n),), (T(b), T(b))), work + N + 2 * N + N, depth + 1 + 3 * lg(n), 0)


# ---------------------------------------------------------------------------------------------
# Compaction: a scan of the keep-flags (2N, depth 2 lg N) then a scatter to the offsets (depth 1).

def test_nonzero_flags_scan_scatter():
    N = b * n
    # flag x != 0 (N, 1); scan (2N, 2 lg N); scatter 2 coordinates per element (2N, 1)
    check(rule_cost(aten.nonzero.default, (T(b, n),), T(m, 2)), N + 2 * N + 2 * N, 1 + 2 * lg(N) + 1, 0)
    check(rule_cost(aten.argwhere.default, (T(b, n),), T(m, 2)), 5 * N, 2 + 2 * lg(N), 0)


@pytest.mark.parametrize("x, mask", [(T(b, n), T(n)), (T(n), T(b, n)), (T(b, n), T(b, n))],
                         ids=["mask-broadcast", "self-broadcast", "same-shape"])
def test_masked_select_is_scan_and_scatter_over_the_broadcast(x, mask):
    N = b * n
    check(rule_cost(aten.masked_select.default, (x, mask), T(m)), 2 * N + N, 2 * lg(N) + 1, 0)


def test_unique_sorts_compares_and_compacts():
    sort_work, sort_depth = bitonic(1, n)
    # adjacent compare (n, 1); scan (2n, 2 lg n); scatter (n, 1); inverse | counts (n each, depth 1)
    cost = rule_cost(aten._unique2.default, (T(n), True, True, True), (T(m), T(n), T(m)))
    check(cost, sort_work + n + 2 * n + n + 2 * n, sort_depth + 1 + 2 * lg(n) + 1 + 1, 0)
    plain = rule_cost(aten._unique2.default, (T(b, n),), (T(m), T(0), T(0)))
    sort_work, sort_depth = bitonic(1, b * n)
    check(plain, sort_work + 4 * b * n, sort_depth + 2 + 2 * lg(b * n), 0)
    assert big_o(cost.depth) == sympy.log(n) ** 2
    assert big_o(cost.work) == n * sympy.log(n) ** 2


def test_unique_dim_compares_slices():
    """unique over n rows of width d: comparators compare slices (2d work, depth 1 + lg d)."""
    cost = rule_cost(aten.unique_dim.default, (T(n, d), 0), (T(m, d), T(0), T(0)))
    stages = lg(n) * (lg(n) + 1) / 2
    comparators = sympy.floor(n / 2) * stages
    work = comparators * 2 * d + n * 2 * d + 2 * n + n * d
    depth = stages * (1 + lg(d)) + (1 + lg(d)) + 2 * lg(n) + 1
    check(cost, work, depth, 0)


def test_unique_consecutive_skips_the_sort():
    check(rule_cost(aten.unique_consecutive.default, (T(n),), (T(m), T(0), T(0))), n + 2 * n + n, 2 + 2 * lg(n), 0)


def test_searchsorted_is_a_binary_search_per_query():
    steps = lg(n + 1)
    check(rule_cost(aten.searchsorted.Tensor, (T(b, n), T(b, m)), T(b, m)), b * m * steps, steps, 0)
    check(rule_cost(aten.bucketize.Tensor, (T(b, m), T(n)), T(b, m)), b * m * steps, steps, 0)


# ---------------------------------------------------------------------------------------------
# FFT: length k costs 5 k lg(k) per row at depth lg(k); dims compose in sequence; normalisation +numel, +1.

FFT_CASES = [
    case("_fft_r2c-last", aten._fft_r2c.default, (T(b, n), [1], 0, True), T(b, n), 5 * b * n * lg(n), lg(n)),
    # c2r: the full real signal is [b, n] (last_dim_size n); normalisation 2 (1/n) scales the output
    case("_fft_c2r-normalised", aten._fft_c2r.default, (T(b, m), [1], 2, n), T(b, n),
         5 * b * n * lg(n) + b * n, lg(n) + 1),
    case("_fft_c2c-2d", aten._fft_c2c.default, (T(b, H, W), [1, 2], 1, True), T(b, H, W),
         5 * b * H * W * (lg(H) + lg(W)) + b * H * W, lg(H) + lg(W) + 1),
    case("fft_rfft-default-norm", aten.fft_rfft.default, (T(b, n),), T(b, m), 5 * b * n * lg(n), lg(n)),
    case("fft_rfft-n-pads", aten.fft_rfft.default, (T(b, n), 1024), T(b, 513), 5 * b * 1024 * 10, 10),
    case("fft_fft-dim0", aten.fft_fft.default, (T(n, b), None, 0), T(n, b), 5 * b * n * lg(n), lg(n)),
    # the inverse with the default "backward" norm scales by 1/n; irfft's length is 2 (m - 1)
    case("fft_irfft-scales", aten.fft_irfft.default, (T(b, m),), T(b, 2 * m - 2),
         5 * b * (2 * m - 2) * lg(2 * m - 2) + b * (2 * m - 2), lg(2 * m - 2) + 1),
    case("fft_ifft", aten.fft_ifft.default, (T(b, n),), T(b, n), 5 * b * n * lg(n) + b * n, lg(n) + 1),
    case("fft_fft-ortho", aten.fft_fft.default, (T(b, n),), T(b, n), 5 * b * n * lg(n) + b * n, lg(n) + 1,
         {"norm": "ortho"}),
    case("fft_fft2", aten.fft_fft2.default, (T(b, H, W),), T(b, H, W),
         5 * b * H * W * (lg(H) + lg(W)), lg(H) + lg(W)),
    case("fft_rfftn-all-dims", aten.fft_rfftn.default, (T(b, H, W),), T(b, H, W),
         5 * b * H * W * (lg(b) + lg(H) + lg(W)), lg(b) + lg(H) + lg(W)),
    case("fft_rfftn-s-last-two", aten.fft_rfftn.default, (T(b, H, W), [16, 32]), T(b, 16, 17),
         5 * b * 16 * 32 * (4 + 5), 4 + 5),
]


@pytest.mark.parametrize("op, args, out, work, depth, kwargs", [
    pytest.param(*p.values[:5], p.values[5] if len(p.values) > 5 else {}, id=p.id) for p in FFT_CASES])
def test_fft(op, args, out, work, depth, kwargs):
    check(rule_cost(op, args, out, kwargs), work, depth, 0)


def test_rfft_big_o_is_n_log_n_work_log_depth():
    cost = rule_cost(aten._fft_r2c.default, (T(n), [0], 0, True), T(n))
    assert big_o(cost.work) == n * sympy.log(n)
    assert big_o(cost.depth) == sympy.log(n)


def test_stft_windows_then_transforms_each_frame():
    # [b, L] signal, n_fft 64, F frames: window (b*F*64, 1) then a length-64 transform per frame
    frames = size_symbol("F")
    cost = rule_cost(aten.stft.default, (T(b, n), 64), T(b, 33, frames), {"return_complex": True})
    signal = b * frames * 64
    check(cost, signal + 5 * signal * 6, 1 + 6, 0)


# ---------------------------------------------------------------------------------------------
# Distances: difference and power per coordinate (2 steps), a sum tree over the M coordinates, a root.

CDIST_CASES = [
    case("cdist-p2", aten.cdist.default, (T(b, P, M), T(b, R, M)), {}, T(b, P, R),
         3 * b * P * R * M + b * P * R, 2 + lg(M) + 1),
    case("cdist-p1-no-root", aten.cdist.default, (T(b, P, M), T(b, R, M), 1.0), {}, T(b, P, R),
         3 * b * P * R * M, 2 + lg(M)),
    case("cdist-pinf-no-root", aten.cdist.default, (T(P, M), T(R, M)), {"p": float("inf")}, T(P, R),
         3 * P * R * M, 2 + lg(M)),
    case("cdist-p3", aten.cdist.default, (T(P, M), T(R, M), 3.0), {}, T(P, R), 3 * P * R * M + P * R, 3 + lg(M)),
    case("_cdist_forward", aten._cdist_forward.default, (T(b, P, M), T(b, R, M), 2.0, None), {}, T(b, P, R),
         3 * b * P * R * M + b * P * R, 3 + lg(M)),
    case("_euclidean_dist", aten._euclidean_dist.default, (T(P, M), T(R, M)), {}, T(P, R),
         3 * P * R * M + P * R, 3 + lg(M)),
    case("pdist", aten._pdist_forward.default, (T(n, M), 2.0), {}, T(n * (n - 1) / 2),
         3 * n * (n - 1) / 2 * M + n * (n - 1) / 2, 3 + lg(M)),
]


@pytest.mark.parametrize("op, args, kwargs, out, work, depth", CDIST_CASES)
def test_distances(op, args, kwargs, out, work, depth):
    check(rule_cost(op, args, out, kwargs), work, depth, 0)


def test_cdist_between_n_points_is_quadratic():
    cost = rule_cost(aten.cdist.default, (T(n, 3), T(n, 3)), T(n, n))
    assert big_o(cost.work) == n**2
    assert big_o(cost.depth) == 1


# ---------------------------------------------------------------------------------------------
# Resampling: out elements each read r inputs (nearest 1, linear 2 per dim, cubic 4 per dim): out * r work,
# depth 1 + lg(r).

_UP = b * C * Ho * Wo

RESAMPLE_CASES = [
    case("nearest2d.vec", aten.upsample_nearest2d.vec, (T(b, C, H, W), [Ho, Wo], None), T(b, C, Ho, Wo), _UP, 1),
    case("nearest2d.default", aten.upsample_nearest2d.default, (T(b, C, H, W), [Ho, Wo]), T(b, C, Ho, Wo), _UP, 1),
    case("nearest-exact2d", aten._upsample_nearest_exact2d.vec, (T(b, C, H, W), [Ho, Wo], None), T(b, C, Ho, Wo),
         _UP, 1),
    case("linear1d", aten.upsample_linear1d.vec, (T(b, C, n), None, False, [2.0]), T(b, C, 2 * n),
         2 * b * C * 2 * n, 2),
    case("bilinear2d.vec", aten.upsample_bilinear2d.vec, (T(b, C, H, W), None, False, [2.0, 2.0]),
         T(b, C, 2 * H, 2 * W), 4 * b * C * 4 * H * W, 3),
    case("bilinear2d.default", aten.upsample_bilinear2d.default, (T(b, C, H, W), [Ho, Wo], True),
         T(b, C, Ho, Wo), 4 * _UP, 3),
    case("bicubic2d", aten.upsample_bicubic2d.default, (T(b, C, H, W), [Ho, Wo], False), T(b, C, Ho, Wo),
         16 * _UP, 5),
    case("trilinear3d", aten.upsample_trilinear3d.vec, (T(b, C, 4, H, W), [8, Ho, Wo], False, None),
         T(b, C, 8, Ho, Wo), 8 * 8 * _UP, 4),
    # antialiased 4x downsampling in both dims: 2 * 4 taps per dim -> 64 reads
    case("bilinear2d_aa-down", aten._upsample_bilinear2d_aa.vec, (T(b, C, 40, 48), [10, 12], False, None),
         T(b, C, 10, 12), 64 * b * C * 120, 1 + 6),
    # antialiased upsampling keeps the plain taps
    case("bicubic2d_aa-up", aten._upsample_bicubic2d_aa.default, (T(b, C, 10, 12), [20, 24], False),
         T(b, C, 20, 24), 16 * b * C * 480, 5),
    # the gradient of 2x nearest: each input collects 2 x 2 outputs
    case("nearest2d_backward", aten.upsample_nearest2d_backward.default,
         (T(b, C, 2 * H, 2 * W), [2 * H, 2 * W], [b, C, H, W]), T(b, C, H, W), 4 * b * C * H * W, 1 + 2),
    # bilinear 2x backward: 4 reads per output; an input is read by 2 taps * 2 outputs per dim -> 16
    case("bilinear2d_backward", aten.upsample_bilinear2d_backward.default,
         (T(b, C, 2 * H, 2 * W), [2 * H, 2 * W], [b, C, H, W], False), T(b, C, H, W), 16 * b * C * H * W, 1 + 4),
]


@pytest.mark.parametrize("op, args, out, work, depth", RESAMPLE_CASES)
def test_resample(op, args, out, work, depth):
    check(rule_cost(op, args, out), work, depth, 0)


@pytest.mark.parametrize("mode, reads", [(0, 4), (1, 1), (2, 16)], ids=["bilinear", "nearest", "bicubic"])
def test_grid_sampler_2d(mode, reads):
    # source coordinates from the grid (b*Ho*Wo*2 values, depth 1), then reads as interpolation
    cost = rule_cost(aten.grid_sampler_2d.default, (T(b, C, H, W), T(b, Ho, Wo, 2), mode, 0, False),
                     T(b, C, Ho, Wo))
    check(cost, 2 * b * Ho * Wo + reads * _UP, 1 + 1 + lg(reads), 0)
    generic = rule_cost(aten.grid_sampler.default, (T(b, C, H, W), T(b, Ho, Wo, 2), mode, 0, False), T(b, C, Ho, Wo))
    check(generic, cost.work, cost.depth, 0)


def test_grid_sampler_3d_trilinear():
    cost = rule_cost(aten.grid_sampler_3d.default, (T(b, C, n, H, W), T(b, m, Ho, Wo, 3), 0, 0, False),
                     T(b, C, m, Ho, Wo))
    check(cost, 3 * b * m * Ho * Wo + 8 * b * C * m * Ho * Wo, 1 + 1 + 3, 0)


@pytest.mark.parametrize("stride, overlap", [(1, 9), (2, 4), (3, 1)])
def test_col2im_accumulates_overlapping_patches(stride, overlap):
    # fold 3x3 patches: a pixel receives one value from each of the ceil(3/s)^2 patches covering it
    L_ = size_symbol("Lp")
    cost = rule_cost(aten.col2im.default, (T(b, 9 * C, L_), [H, W], [3, 3], [1, 1], [1, 1], [stride, stride]),
                     T(b, C, H, W))
    check(cost, b * C * H * W + 9 * b * C * L_, 2 + lg(overlap), 0)


def test_affine_grid_is_a_dot_of_three_per_coordinate():
    cost = rule_cost(aten.affine_grid_generator.default, (T(b, 2, 3), [b, C, H, W], False), T(b, H, W, 2))
    check(cost, 2 * b * H * W * 2 * 3, 1 + 2, 0)


# ---------------------------------------------------------------------------------------------
# Recurrences. Cell step: gates = x W_ih^T (2*B*G*H*I, depth 1 + lg I) | h W_hh^T (1 + lg H), then
#   lstm: + 4-term sum (3 * gates, depth 2), gate math 9BH at depth 1 + 2 + 2;
#   gru:  each part + its bias (depth 1), gate math 11BH at depth 2 + 3 + 2 (h' = (1 - z) n + z h);
#   rnn:  + sum of the parts (and biases), activation BH at depth 1.

def _contract_depth():
    return sympy.Max(1 + lg(I), 1 + lg(h))


def _lstm_step(batch=b):
    gates = 4 * batch * h
    flops = 2 * gates * I + 2 * gates * h
    return flops + 3 * gates + 9 * batch * h, _contract_depth() + 2 + 5, flops


def test_lstm_cell():
    args = (T(b, I), [T(b, h), T(b, h)], T(4 * h, I), T(4 * h, h), T(4 * h), T(4 * h))
    check(rule_cost(aten.lstm_cell.default, args, (T(b, h), T(b, h))), *_lstm_step())


def test_gru_cell():
    args = (T(b, I), T(b, h), T(3 * h, I), T(3 * h, h), T(3 * h), T(3 * h))
    gates = 3 * b * h
    flops = 2 * gates * I + 2 * gates * h
    check(rule_cost(aten.gru_cell.default, args, T(b, h)),
          flops + 2 * gates + 11 * b * h, _contract_depth() + 1 + 7, flops)


def test_rnn_tanh_cell_without_bias():
    flops = 2 * b * h * I + 2 * b * h * h
    check(rule_cost(aten.rnn_tanh_cell.default, (T(b, I), T(b, h), T(h, I), T(h, h)), T(b, h)),
          flops + b * h + b * h, _contract_depth() + 1 + 1, flops)


def _lstm_params(layers, directions=1):
    params = []
    for layer in range(layers):
        for _ in range(directions):
            width = I if layer == 0 else h * directions
            params += [T(4 * h, width), T(4 * h, h), T(4 * h), T(4 * h)]
    return params


def _lstm_enter_recur(in_size, hidden=h):
    """(V, D): a cell entered from below has only x W_ih^T on its path (1 + lg I), a step along time only
    h W_hh^T (1 + lg H); then the 4-term gate sum (2) and the gate math (5)."""
    return 1 + lg(in_size) + 7, 1 + lg(hidden) + 7


def test_lstm_sequence_depth_is_linear_in_T():
    """One layer over Tn steps (seq-first): the first cell waits for both contractions, each later step only for
    h W_hh^T."""
    args = (T(Tn, b, I), [T(1, b, h), T(1, b, h)], _lstm_params(1), True, 1, 0.0, False, False, False)
    cost = rule_cost(aten.lstm.input, args, (T(Tn, b, h), T(1, b, h), T(1, b, h)))
    work, depth, flops = _lstm_step()
    v, d = _lstm_enter_recur(I)
    check(cost, Tn * work, sympy.Max(v, d) + (Tn - 1) * d, Tn * flops)
    assert sympy.expand(big_o(cost.depth) - (Tn * sympy.log(h) + sympy.log(I))) == 0  # linear in Tn
    assert big_o(cost.work) == Tn * b * h**2 + Tn * b * h * I


def test_lstm_depth_with_static_sizes_is_exactly_linear_in_T():
    params = [T(64, 10), T(64, 16), T(64), T(64)]
    depths = []
    for steps in (4, 8, 16):
        args = (T(b, steps, 10), [T(1, b, 16), T(1, b, 16)], params, True, 1, 0.0, False, False, True)
        depths.append(rule_cost(aten.lstm.input, args, (T(b, steps, 16), T(1, b, 16), T(1, b, 16))).depth)
    # the recurrent step: 1 + lg 16 + 2 + 5 = 12 per step
    assert depths == [12 * 4, 12 * 8, 12 * 16]


def test_lstm_two_layers_pipeline_as_a_wavefront():
    """Layer 2 takes step t as soon as layer 1 produced it: one entry per layer, then Tn - 1 recurrent steps."""
    params = [T(4 * h, I), T(4 * h, h), T(4 * h), T(4 * h), T(4 * h, h), T(4 * h, h), T(4 * h), T(4 * h)]
    args = (T(b, Tn, I), [T(2, b, h), T(2, b, h)], params, True, 2, 0.0, False, False, True)
    cost = rule_cost(aten.lstm.input, args, (T(b, Tn, h), T(2, b, h), T(2, b, h)))
    w1, _, f1 = _lstm_step()
    gates = 4 * b * h
    f2 = 2 * gates * h + 2 * gates * h
    w2 = f2 + 3 * gates + 9 * b * h
    v1, d = _lstm_enter_recur(I)
    v2, _ = _lstm_enter_recur(h)
    check(cost, Tn * (w1 + w2), sympy.Max(v1, d) + v2 + (Tn - 1) * d, Tn * (f1 + f2))


def test_bidirectional_layers_wait_for_the_reverse_pass():
    params = _lstm_params(2, directions=2)
    args = (T(Tn, b, I), [T(4, b, h), T(4, b, h)], params, True, 2, 0.0, False, True, False)
    cost = rule_cost(aten.lstm.input, args, (T(Tn, b, 2 * h), T(4, b, h), T(4, b, h)))
    v1, d = _lstm_enter_recur(I)
    v2, _ = _lstm_enter_recur(2 * h)
    assert same(cost.depth, sympy.Max(v1, d) + (Tn - 1) * d + sympy.Max(v2, d) + (Tn - 1) * d)


def test_gru_sequence_and_packed_lstm():
    params = [T(3 * h, I), T(3 * h, h), T(3 * h), T(3 * h)]
    gru = rule_cost(aten.gru.input, (T(Tn, b, I), T(1, b, h), params, True, 1, 0.0, False, False, False),
                    (T(Tn, b, h), T(1, b, h)))
    # GRU entry: 1 + lg I + bias 1 + gate math 7; step: 1 + lg h + 1 + 7
    assert same(gru.depth, sympy.Max(9 + lg(I), 9 + lg(h)) + (Tn - 1) * (9 + lg(h)))
    # packed: K tokens over Tn steps (batch_sizes has Tn entries): work per token, depth per step
    packed = rule_cost(aten.lstm.data, (T(K, I), T(Tn), [T(1, b, h), T(1, b, h)], _lstm_params(1), True, 1, 0.0,
                                        False, False), (T(K, h), T(1, b, h), T(1, b, h)))
    work, _, flops = _lstm_step(batch=1)
    v, d = _lstm_enter_recur(I)
    check(packed, K * work, sympy.Max(v, d) + (Tn - 1) * d, K * flops)


# ---------------------------------------------------------------------------------------------
# Backward ops.

@pytest.mark.parametrize("groups, mask", [(1, [True, True, True]), (4, [True, True, True]), (1, [False, True, False]),
                                          (2, [True, False, False])])
def test_convolution_backward(groups, mask):
    """grad input: transposed conv (fan-out 16/groups * 9 per input); grad weight: every weight sums b*Ho*Wo products;
    grad bias: a tree over b*Ho*Wo per channel. In parallel; FLOPs exactly flop_counter.conv_backward_flop (which
    counts grouped grad weight over all 8*16 channel pairs)."""
    x, w, grad = T(b, 8, H, W), T(16, 8 // groups, 3, 3), T(b, 16, Ho, Wo)
    args = (grad, x, w, [16], [1, 1], [1, 1], [1, 1], False, [0, 0], groups, mask)
    outs = (x, w, T(16))
    cost = rule_cost(aten.convolution_backward.default, args, outs)
    gi = 2 * b * Ho * Wo * 16 * (8 // groups) * 9
    gw_work = 2 * 16 * (8 // groups) * 9 * b * Ho * Wo
    gw_flops = 2 * 16 * 8 * 9 * b * Ho * Wo
    parts = [(gi, 1 + lg(16 // groups * 9), gi), (gw_work, 1 + lg(b * Ho * Wo), gw_flops),
             (b * 16 * Ho * Wo, lg(b * Ho * Wo), 0)]
    kept = [p for p, keep in zip(parts, mask) if keep]
    work = sum(p[0] for p in kept)
    depth = sympy.Max(*[p[1] for p in kept]) if len(kept) > 1 else kept[0][1]
    reference = flop_counter.conv_backward_flop(grad.shape, x.shape, w.shape, None, None, None, None, False, None,
                                                groups, mask, out_val=[x.shape, w.shape, (16,)])
    check(cost, work, depth, reference)
    assert same(cost.flops, sum(p[2] for p in kept))


def test_convolution_backward_transposed_flops_match_flop_counter():
    x, w, grad = T(b, 8, H, W), T(8, 3, 4, 4), T(b, 3, Ho, Wo)
    mask = [True, True, False]
    cost = rule_cost(aten.convolution_backward.default,
                     (grad, x, w, None, [2, 2], [1, 1], [1, 1], True, [0, 0], 1, mask), (x, w, T(0)))
    reference = flop_counter.conv_backward_flop(grad.shape, x.shape, w.shape, None, None, None, None, True, None, 1,
                                                mask, out_val=[x.shape, w.shape, None])
    assert same(cost.flops, reference)


def _norm_backward(N, k, stat, weight=True, mask=(True, True, True)):
    """xhat (2N, 2) | g = grad*w (N, 1); grad x: sums (N | 2N, 1 + lg k) then 5N + R at depth 4;
    grad w: 2N, 1 + lg(stat); grad b: N, lg(stat) (needs no xhat)."""
    R = sympy.cancel(N / k)
    work = 2 * N + (N if weight else 0)
    after = []
    if mask[0]:
        work += 3 * N + 5 * N + R
        after.append(1 + lg(k) + 4)
    if mask[1] and weight:
        work += 2 * N
        after.append(1 + lg(stat))
    depth = 2 + (sympy.Max(*after) if len(after) > 1 else after[0])
    if mask[2]:
        work += N
        depth = sympy.Max(depth, lg(stat))
    return work, depth


NORM_BACKWARD_CASES = [
    case("layer_norm", aten.native_layer_norm_backward.default,
         (T(b, n, d), T(b, n, d), [d], T(b, n, 1), T(b, n, 1), T(d), T(d), [True, True, True]),
         (T(b, n, d), T(d), T(d)), *_norm_backward(b * n * d, d, b * n)),
    case("layer_norm-input-only-no-weight", aten.native_layer_norm_backward.default,
         (T(b, n, d), T(b, n, d), [d], T(b, n, 1), T(b, n, 1), None, None, [True, False, False]),
         (T(b, n, d), T(0), T(0)), *_norm_backward(b * n * d, d, b * n, False, (True, False, False))),
    # 32 channels in 8 groups: rows of 4*H*W; weight and bias sum over b*H*W per channel
    case("group_norm", aten.native_group_norm_backward.default,
         (T(b, 32, H, W), T(b, 32, H, W), T(b, 8), T(b, 8), T(32), b, 32, H * W, 8, [True, True, True]),
         (T(b, 32, H, W), T(32), T(32)), *_norm_backward(32 * b * H * W, 4 * H * W, b * H * W)),
    case("batch_norm-train", aten.native_batch_norm_backward.default,
         (T(b, C, H, W), T(b, C, H, W), T(C), T(C), T(C), T(C), T(C), True, 1e-5, [True, True, True]),
         (T(b, C, H, W), T(C), T(C)), *_norm_backward(C * b * H * W, b * H * W, b * H * W)),
    # eval: grad x = grad * (w * rstd): 2C at depth 2, then N at depth 1; grad w: xhat (2N, 2), times grad (N, 1),
    # sum (N, lg k); grad b: sum (N, lg k)
    case("batch_norm-eval", aten.native_batch_norm_backward.default,
         (T(b, C, H, W), T(b, C, H, W), T(C), T(C), T(C), None, None, False, 1e-5, [True, True, True]),
         (T(b, C, H, W), T(C), T(C)), 2 * C + C * b * H * W + 4 * C * b * H * W + C * b * H * W,
         sympy.Max(3, 3 + lg(b * H * W), lg(b * H * W))),
]


@pytest.mark.parametrize("op, args, out, work, depth", NORM_BACKWARD_CASES)
def test_normalisation_backward(op, args, out, work, depth):
    check(rule_cost(op, args, out), work, depth, 0)


def test_softmax_backward():
    N = b * n * m
    # y * (g - sum(g * y)): multiply, sum tree, subtract, multiply
    check(rule_cost(aten._softmax_backward_data.default, (T(b, n, m), T(b, n, m), -1, torch.float32), T(b, n, m)),
          4 * N, 3 + lg(m), 0)
    # g - exp(y) * sum(g): the sum and exp(y) in parallel, then multiply and subtract
    check(rule_cost(aten._log_softmax_backward_data.default, (T(b, n, m), T(b, n, m), 1, torch.float32),
                    T(b, n, m)), 4 * N, sympy.Max(lg(n), 1) + 2, 0)


def test_embedding_dense_backward_is_an_accumulating_scatter():
    # zero-filled [V, d] plus every gradient row added in; all b*n indices may hit one row: a tree over b*n
    cost = rule_cost(aten.embedding_dense_backward.default, (T(b, n, d), T(b, n), V, -1, False), T(V, d))
    check(cost, V * d + b * n * d, 2 + lg(b * n), 0)


POOL_BACKWARD_CASES = [
    # 3x3 windows, stride 2: an input is covered by ceil(3/2)^2 = 4 windows
    case("max_pool2d-overlapping", aten.max_pool2d_with_indices_backward.default,
         (T(b, C, Ho, Wo), T(b, C, H, W), [3, 3], [2, 2], [1, 1], [1, 1], False, T(b, C, Ho, Wo)),
         T(b, C, H, W), b * C * H * W + _UP, 2 + 2),
    case("max_pool2d-disjoint-default-stride", aten.max_pool2d_with_indices_backward.default,
         (T(b, C, Ho, Wo), T(b, C, H, W), [2, 2], [], [0, 0], [1, 1], False, T(b, C, Ho, Wo)),
         T(b, C, H, W), b * C * H * W + _UP, 2),
    # divide each gradient (1), spread over the window, sum the overlapping shares
    case("avg_pool2d-disjoint", aten.avg_pool2d_backward.default,
         (T(b, C, Ho, Wo), T(b, C, H, W), [2, 2], [2, 2], [0, 0], False, True, None), T(b, C, H, W),
         _UP + 4 * _UP, 1 + 1),
    case("avg_pool2d-stride1", aten.avg_pool2d_backward.default,
         (T(b, C, Ho, Wo), T(b, C, H, W), [3, 3], [1, 1], [1, 1], False, True, None), T(b, C, H, W),
         _UP + 9 * _UP, 1 + 1 + 4),
    case("adaptive_avg_pool2d-global", aten._adaptive_avg_pool2d_backward.default,
         (T(b, C, 1, 1), T(b, C, H, W)), T(b, C, H, W), b * C + b * C * H * W, 1 + 1),
    # 5 -> 3 windows [0,2), [1,4), [3,5): lengths sum to 7 per dim, positions 1 and 3 covered twice
    case("adaptive_avg_pool2d-overlapping", aten._adaptive_avg_pool2d_backward.default,
         (T(b, C, 3, 3), T(b, C, 5, 5)), T(b, C, 5, 5), b * C * 9 + b * C * 49, 1 + 1 + 2),
]


@pytest.mark.parametrize("op, args, out, work, depth", POOL_BACKWARD_CASES)
def test_pooling_backward(op, args, out, work, depth):
    check(rule_cost(op, args, out), work, depth, 0)


def _sdpa_backward_expected(masked=False):
    bls = b * h * L * S
    flops = 2 * bls * (3 * E + 2 * Ev)
    work = flops + 6 * bls + 2 * b * h * L * Ev + (bls if masked else 0)
    front = sympy.Max(1 + lg(E) + 1 + (1 if masked else 0) + 2, 1 + lg(Ev))
    depth = front + sympy.Max(3 + sympy.Max(1 + lg(S), 1 + lg(L)), 1 + lg(L))
    return work, depth, flops


@pytest.mark.parametrize("op, args, masked", [
    case("flash-cpu", aten._scaled_dot_product_flash_attention_for_cpu_backward.default,
         (_O, _Q, _K, _V, _O, T(b, h, L), 0.0, False), False),
    case("flash-cpu-causal", aten._scaled_dot_product_flash_attention_for_cpu_backward.default,
         (_O, _Q, _K, _V, _O, T(b, h, L), 0.0, True), True),
    case("efficient-bias", aten._scaled_dot_product_efficient_attention_backward.default,
         (_O, _Q, _K, _V, T(b, h, L, S), _O, T(b, h, L), T(), T(), 0.0, [True, True, True, False]), True),
])
def test_sdpa_backward(op, args, masked):
    """Recompute P from logsumexp, dP and rowsum(dO * O) in parallel, dS, then dQ | dK with dV."""
    cost = rule_cost(op, args, (_Q, _K, _V))
    check(cost, *_sdpa_backward_expected(masked))
    assert same(cost.flops, flop_counter.sdpa_backward_flop_count(_O.shape, _Q.shape, _K.shape, _V.shape))


@pytest.mark.parametrize("op", [aten.threshold_backward.default, aten.gelu_backward.default,
                                aten.silu_backward.default, aten.tanh_backward.default, aten.sigmoid_backward.default,
                                aten.hardtanh_backward.default, aten.leaky_relu_backward.default,
                                aten.native_dropout_backward.default], ids=str)
def test_elementwise_backward(op):
    check(rule_cost(op, (T(b, n, d), T(b, n, d), 0.0), T(b, n, d)), b * n * d, 1, 0)


# ---------------------------------------------------------------------------------------------
# Losses: per-element steps, then a sum tree (mean: one divide more).

def test_cross_entropy_is_log_softmax_then_nll():
    cost = rule_cost(aten.cross_entropy_loss.default, (T(b, C), T(b)), T())
    # log_softmax over C: 5bC + b, depth 2 lg C + 4; pick (b, 1); sum tree (b, lg b); divide (1, 1)
    check(cost, 5 * b * C + b + b + b + 1, 2 * lg(C) + 4 + 1 + lg(b) + 1, 0)


@pytest.mark.parametrize("reduction, work, depth", [(0, 2 * b * n, 2), (1, 3 * b * n + 1, 3 + lg(b * n)),
                                                    (2, 3 * b * n, 2 + lg(b * n))], ids=["none", "mean", "sum"])
def test_mse_loss_reductions(reduction, work, depth):
    check(rule_cost(aten.mse_loss.default, (T(b, n), T(b, n), reduction), T()), work, depth, 0)


def test_nll_loss_forward_and_backward():
    check(rule_cost(aten.nll_loss_forward.default, (T(b, C), T(b), None, 1, -100), (T(), T())),
          b + b + 1, 1 + lg(b) + 1, 0)
    check(rule_cost(aten.nll_loss_backward.default, (T(), T(b, C), T(b), None, 1, -100, T()), T(b, C)),
          b * C + b, 2, 0)


def test_adaptive_avg_pool_backward_unbatched_input():
    # [C, 5, 5] -> [C, 3, 3]: the spatial dims come from the op (2d), not from the batch layout
    check(rule_cost(aten._adaptive_avg_pool2d_backward.default, (T(C, 3, 3), T(C, 5, 5)), T(C, 5, 5)),
          C * 9 + C * 49, 1 + 1 + 2, 0)


def test_rms_norm_backward():
    # grad x: g = grad * w and g * x (2N, 2), sum tree (N, lg d), per-row scale (rows, 1), x * s, subtract,
    # times rstd (3N, 3); grad w: grad * x * rstd (2N, 2), sum over the b*n rows (N, lg(bn)); in parallel
    N = b * n * d
    cost = rule_cost(aten._fused_rms_norm_backward.default, (T(b, n, d), T(b, n, d), [d], T(b, n, 1), T(d),
                                                             [True, True]), (T(b, n, d), T(d)))
    check(cost, 6 * N + b * n + 3 * N, sympy.Max(2 + lg(d) + 4, 2 + lg(b * n)), 0)


def test_cosine_similarity_and_pairwise_distance():
    N = b * n * d
    # three (multiply, sum tree) in parallel, then norms product, eps clamp, divide per row
    check(rule_cost(aten.cosine_similarity.default, (T(b, n, d), T(b, n, d), -1), T(b, n)),
          6 * N + 3 * b * n, 1 + lg(d) + 3, 0)
    # subtract, add eps, power (3N, 3), sum tree over d, root per row
    check(rule_cost(aten.pairwise_distance.default, (T(b, d), T(b, d)), T(b)),
          4 * b * d + b, 3 + lg(d) + 1, 0)


# ---------------------------------------------------------------------------------------------
# In-place (`op_`) and `out=` overloads compute what their functional overload computes: they take its rule.
# The enumeration here is by torch's naming convention (aten.X_.O and aten.X.O_out / aten.X.out), independent
# of the schema matching the registry uses; both directions are checked.

from depthscope.cost.registry import aten_overloads, canonical_call, register  # noqa: E402
from depthscope.cost.variants import functional_of  # noqa: E402


def _functional_modeled():
    """Every non-mutating ATen overload with a rule (registered, or by torch's pointwise tag)."""
    return [op for op in aten_overloads() if not op._schema.is_mutable and lookup(op) is not None]


def _conventional_variants(op):
    """aten.X_.O (in-place) and aten.X.O_out / aten.X.out (for X.default) that exist in torch and mutate."""
    name = op._schema.name.split("::")[1]
    overload = op._overloadname
    found = []
    inplace_name = "__i" + name[2:] if name.startswith("__") and name.endswith("__") else name + "_"
    packet = getattr(aten, inplace_name, None)
    if packet is not None and overload in packet.overloads():
        found.append(getattr(packet, overload))
    packet = getattr(aten, name)
    for out_name in ([f"{overload}_out"] + (["out"] if overload == "default" else [])):
        if out_name in packet.overloads():
            found.append(getattr(packet, out_name))
    return [v for v in found if v._schema.is_mutable]


def test_every_in_place_and_out_variant_of_a_modeled_op_takes_its_rule():
    checked, wrong = 0, []
    for op in _functional_modeled():
        for variant in _conventional_variants(op):
            if functional_of(variant) is None:
                # the convention names an overload with other arguments (e.g. a different first type)
                continue
            checked += 1
            if lookup(variant) is not lookup(op) and lookup(variant) is not lookup(functional_of(variant)):
                wrong.append(str(variant))
    assert checked > 600
    assert wrong == []


def test_no_in_place_or_out_overload_of_a_modeled_op_is_unmodeled():
    """Tagged by torch (Tag.inplace / Tag.out), whose packet has a modeled functional overload: must resolve."""
    modeled = {op._schema.name for op in _functional_modeled()}
    missing = []
    for op in aten_overloads():
        if torch.Tag.inplace not in op.tags and torch.Tag.out not in op.tags:
            continue
        name = op._schema.name
        base = name[:-1] if torch.Tag.inplace in op.tags and name.endswith("_") else name
        if name.startswith("aten::__i"):
            base = "aten::__" + name[len("aten::__i"):]
        if base in modeled and lookup(op) is None:
            missing.append(str(op))
    assert missing == []


@pytest.mark.parametrize("variant", [
    aten.hardswish_.default, aten.gelu_.default, aten.masked_fill_.Scalar, aten.index_add_.default,
    aten.addmm_.default, aten.baddbmm_.default, aten.relu_.default, aten.__iand__.Tensor, aten.fill_.Scalar,
    aten.copy_.default, aten.uniform_.default, aten.zero_.default, aten.detach_.default, aten.resize_.default,
    aten.index_put_.default, aten.t_.default, aten.dropout_.default, aten.bernoulli_.float,
])
def test_named_in_place_overloads_are_modeled(variant):
    assert lookup(variant) is not None and lookup(variant) is lookup(functional_of(variant))


def test_out_tensors_are_results_not_inputs():
    """scatter.src_out / sort.values / sum.IntList_out: the out= tensors are dropped before the rule sees the call,
    so the cost equals the functional overload's."""
    x, idx, src = T(b, n), T(b, n), T(b, n)
    functional = rule_cost(aten.scatter.src, (x, 1, idx, src), T(b, n))
    # an out= tensor of another size (torch resizes it): never read as the source
    call = OpCall(aten.scatter.src_out, (x, 1, idx, src), {"out": T(b, 3 * n)}, (T(b, n),))
    canon = canonical_call(call)
    assert canon.op is aten.scatter.src and "out" not in canon.kwargs
    assert lookup(call.op)(canon) == functional
    sort_values = OpCall(aten.sort.values, (T(b, n), -1, False), {"values": T(b, n), "indices": T(b, n)},
                         (T(b, n), T(b, n)))
    assert lookup(sort_values.op)(canonical_call(sort_values)) == rule_cost(aten.sort.default, (T(b, n),),
                                                                            (T(b, n), T(b, n)))
    summed = OpCall(aten.sum.IntList_out, (T(b, n), [1]), {"out": T(b)}, (T(b),))
    assert lookup(summed.op)(canonical_call(summed)) == rule_cost(aten.sum.dim_IntList, (T(b, n), [1]), T(b))


def test_factory_out_overloads_drop_the_tensor_options():
    assert functional_of(aten.zeros.out) is aten.zeros.default
    assert functional_of(aten._to_copy.out) is aten._to_copy.default
    assert functional_of(aten.arange.start_out) is aten.arange.start_step
    assert functional_of(aten.arange.out) is aten.arange.default


def test_registering_a_variant_is_an_error_and_packets_register_only_functional_overloads():
    with pytest.raises(ValueError, match="in-place variant of aten.gelu.default"):
        register(aten.gelu_.default)(elementwise)
    with pytest.raises(ValueError, match="out variant of aten.mm.default"):
        register(aten.mm.out)(elementwise)
    assert aten.mm.out not in RULES and aten.mm.default in RULES
    assert aten.gelu_.default not in RULES


def test_no_registered_overload_is_a_variant():
    """Variants resolve by schema, never by their own registration (one rule per computation)."""
    assert [str(op) for op in RULES if functional_of(op) is not None] == []


# ---------------------------------------------------------------------------------------------
# Scatters. A plain scatter writes each value to its address (copy self, then write: depth 2). An accumulating
# scatter also combines the values that collide on one destination: up to k of them (scatter: the sources of a
# column, k = index.size(dim); index_add / index_reduce: every entry of the 1-D index) plus self's value, a tree
# after the move: 2 + lg(k). reduce="mean" counts the values in parallel and divides: + moved work, + numel(self)
# work, + 1 depth. masked_scatter needs each set position's rank among the set flags: a prefix sum.

_SELF, _IDX, _SRC = T(b, m), T(b, n), T(b, n)
_TABLE, _IDX1, _ROWS = T(m, d), T(n), T(n, d)

SCATTER_CASES = [
    case("scatter-src-plain", aten.scatter.src, (_SELF, 1, _IDX, _SRC), {}, b * m + b * n, 2),
    case("scatter-value-plain", aten.scatter.value, (_SELF, 1, _IDX, 2.0), {}, b * m + b * n, 2),
    # torch reads src only where index has entries: a src larger than index moves numel(index) values
    case("scatter-src-larger-than-index", aten.scatter.src, (_SELF, 1, _IDX, T(b, 3 * n)), {}, b * m + b * n, 2),
    case("index_copy-plain", aten.index_copy.default, (_TABLE, 0, _IDX1, _ROWS), {}, m * d + n * d, 2),
    case("scatter-reduce-add", aten.scatter.reduce, (_SELF, 1, _IDX, _SRC), {"reduce": "add"},
         b * m + b * n, 2 + lg(n)),
    case("scatter-reduce-multiply", aten.scatter.reduce, (_SELF, 1, _IDX, _SRC), {"reduce": "multiply"},
         b * m + b * n, 2 + lg(n)),
    case("scatter-value-reduce", aten.scatter.value_reduce, (_SELF, 1, _IDX, 2.0), {"reduce": "add"},
         b * m + b * n, 2 + lg(n)),
    # along dim 0 the colliding sources are the index's rows
    case("scatter_add-dim0", aten.scatter_add.default, (T(m, b), 0, T(n, b), T(n, b)), {}, m * b + n * b, 2 + lg(n)),
    case("scatter_add-dim1", aten.scatter_add.default, (_SELF, 1, _IDX, _SRC), {}, b * m + b * n, 2 + lg(n)),
    *[case(f"scatter_reduce-{how}", aten.scatter_reduce.two, (_SELF, 1, _IDX, _SRC, how), {},
           b * m + b * n, 2 + lg(n)) for how in ("sum", "prod", "amax", "amin")],
    case("scatter_reduce-sum-exclude-self", aten.scatter_reduce.two, (_SELF, 1, _IDX, _SRC, "sum"),
         {"include_self": False}, b * m + b * n, 2 + lg(n)),
    case("scatter_reduce-mean", aten.scatter_reduce.two, (_SELF, 1, _IDX, _SRC, "mean"), {},
         b * m + b * n + b * n + b * m, 3 + lg(n)),
    case("index_add", aten.index_add.default, (_TABLE, 0, _IDX1, _ROWS), {}, m * d + n * d, 2 + lg(n)),
    *[case(f"index_reduce-{how}", aten.index_reduce.default, (_TABLE, 0, _IDX1, _ROWS, how), {},
           m * d + n * d, 2 + lg(n)) for how in ("prod", "amax", "amin")],
    case("index_reduce-mean", aten.index_reduce.default, (_TABLE, 0, _IDX1, _ROWS, "mean"),
         {"include_self": False}, m * d + n * d + n * d + m * d, 3 + lg(n)),
    case("index_put-accumulate", aten.index_put.default, (_SELF, [T(n), T(n)], T(n), True), {},
         b * m + n, 2 + lg(n)),
    case("index_put-plain", aten.index_put.default, (_SELF, [T(n), T(n)], T(n)), {}, b * m + n, 2),
    # index_fill writes the value over len(index) slices of b*d elements each (dim 1 of [b, m, d])
    case("index_fill", aten.index_fill.int_Scalar, (T(b, m, d), 1, _IDX1, -1.0), {}, b * m * d + n * b * d, 2),
    case("index_fill-tensor-value", aten.index_fill.int_Tensor, (T(b, m, d), 1, _IDX1, T()), {},
         b * m * d + n * b * d, 2),
    # the mask broadcasts against self: N = b*n flags, a scan (2N, 2 lg N), copy self (N), read and select (N)
    case("masked_scatter-broadcast-mask", aten.masked_scatter.default, (T(b, n), T(n), T(b * n)), {},
         4 * b * n, 2 * lg(b * n) + 1),
]


@pytest.mark.parametrize("op, args, kwargs, work, depth", SCATTER_CASES)
def test_scatters(op, args, kwargs, work, depth):
    check(rule_cost(op, args, args[0], kwargs), work, depth)


@pytest.mark.parametrize("inplace, functional", [
    (aten.scatter_.reduce, aten.scatter.reduce), (aten.scatter_reduce_.two, aten.scatter_reduce.two),
    (aten.index_reduce_.default, aten.index_reduce.default),
    (aten.masked_scatter_.default, aten.masked_scatter.default),
    (aten.index_fill_.int_Scalar, aten.index_fill.int_Scalar),
])
def test_in_place_scatters_take_the_functional_rule(inplace, functional):
    assert lookup(inplace) is lookup(functional)


# Elementwise ops combining m >= 3 tensor operands take ceil(log2 m) levels; a select (where, masked_fill) reads
# one of its two values per element, whatever its operand count.
NARY_CASES = [
    case("addcmul", aten.addcmul.default, (T(b, n), T(b, n), T(b, n)), 2),
    case("addcdiv", aten.addcdiv.default, (T(b, n), T(b, n), T(b, n)), 2),
    case("lerp-tensor-weight", aten.lerp.Tensor, (T(b, n), T(b, n), T(b, n)), 2),
    case("lerp-scalar-weight", aten.lerp.Scalar, (T(b, n), T(b, n), 0.5), 1),
    case("clamp-two-tensor-bounds", aten.clamp.Tensor, (T(b, n), T(n), T(n)), 2),
    case("clamp-one-tensor-bound", aten.clamp.Tensor, (T(b, n), T(n), None), 1),
    case("mse_loss_backward", aten.mse_loss_backward.default, (T(), T(b, n), T(b, n), 1), 2),
    case("binary_cross_entropy_backward-weight", aten.binary_cross_entropy_backward.default,
         (T(b, n), T(b, n), T(b, n), T(b, n), 1), 2),
    case("add-two", aten.add.Tensor, (T(b, n), T(b, n)), 1),
    case("where-select", aten.where.self, (T(b, n), T(b, n), T(b, n)), 1),
    case("masked_fill-tensor-value", aten.masked_fill.Tensor, (T(b, n), T(b, n), T()), 1),
]


@pytest.mark.parametrize("op, args, depth", NARY_CASES)
def test_elementwise_depth_counts_the_operands_combined(op, args, depth):
    check(rule_cost(op, args, T(b, n)), b * n, depth)


def test_where_with_only_a_condition_is_nonzero():
    assert lookup(aten.where.default) is lookup(aten.nonzero.default)


def _adaptive_windows_brute(size_in, size_out):
    """Window j = [floor(j*in/out), ceil((j+1)*in/out)) as torch's adaptive pooling kernels take it."""
    lengths = [-(-(j + 1) * size_in // size_out) - (j * size_in) // size_out for j in range(size_out)]
    return sum(lengths), max(lengths)


@pytest.mark.parametrize("out_h, out_w", [(3, 2), (7, 7), (4, 3), (1, 5)])
def test_adaptive_pooling_windows_are_exact_for_symbolic_sizes(out_h, out_w):
    """With symbolic H, W the deepest window is not ceil(in/out) when out does not divide in (in=5, out=3: 3)."""
    x = T(b, C, H, W)
    pooled = rule_cost(aten.adaptive_max_pool2d.default, (x, [out_h, out_w]), (T(b, C, out_h, out_w),) * 2)
    averaged = rule_cost(aten.adaptive_avg_pool2d.default, (x, [out_h, out_w]), T(b, C, out_h, out_w))
    for hv, wv in [(5, 5), (7, 9), (10, 10), (13, 6), (224, 224), (33, 17)]:
        (sum_h, max_h), (sum_w, max_w) = _adaptive_windows_brute(hv, out_h), _adaptive_windows_brute(wv, out_w)
        sizes = {b: 2, C: 3, H: hv, W: wv}
        assert evaluate(pooled.depth, sizes) == (max_h * max_w - 1).bit_length()
        assert evaluate(pooled.work, sizes) == 2 * 3 * sum_h * sum_w
        assert evaluate(averaged.depth, sizes) == (max_h * max_w - 1).bit_length() + 1


def test_embedding_bag_per_sample_weights_add_a_multiply():
    ramp = TensorMeta((b,), torch.int64, ramp=(0, n, b * n))  # offsets = arange(0, b*n, n): bags of n
    plain = rule_cost(aten._embedding_bag.default, (T(V, d), T(b * n), ramp, False, 0), (T(b, d),) * 4)
    check(plain, 2 * b * n * d, 1 + lg(n))
    weighted = rule_cost(aten._embedding_bag.default, (T(V, d), T(b * n), ramp, False, 0, False, T(b * n)),
                         (T(b, d),) * 4)
    check(weighted, 3 * b * n * d, 2 + lg(n))


def test_embedding_bag_with_data_offsets_is_charged_its_longest_possible_bag():
    # offsets that are data can put every index in one bag: the tree over b*n values is the worst case
    data = rule_cost(aten._embedding_bag.default, (T(V, d), T(b * n), T(b), False, 0), (T(b, d),) * 4)
    check(data, 2 * b * n * d, 1 + lg(b * n))
    uneven = rule_cost(aten._embedding_bag.default, (T(V, d), T(b * n), TensorMeta((b,), torch.int64, ramp=(0, 2 * n, 4 * b * n)),
                                                   False, 0), (T(b, d),) * 4)
    check(uneven, 2 * b * n * d, 1 + lg(b * n))  # a ramp that does not tile the indices says nothing
