"""Matrix products: 2 FLOPs per multiply-add (torch.utils.flop_counter), depth 1 multiply + a log-depth sum tree."""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import Cost
from depthscope.symbols import clog2, numel
from depthscope.cost.registry import OpCall, register

aten = ops.aten


def contraction(out_numel, k, bias: bool = False) -> Cost:
    """Each of out_numel outputs is a dot product of length k: k multiplies at depth 1, then a tree of depth ceil(log2 k).

    FLOPs (and work) 2 * out_numel * k as flop_counter counts them; a fused bias adds out_numel work and 1 depth.
    """
    flops = 2 * out_numel * k
    cost = Cost(flops, 1 + clog2(k), flops)
    if bias:
        cost = cost + Cost(out_numel, 1)
    return cost


@register(aten.mm, work="2*M*N*K", depth="1 + ceil(log2 K)")
def mm(call: OpCall) -> Cost:
    a = call.args[0]
    return contraction(call.out.numel, a.shape[-1])


@register(aten.bmm, work="2*B*M*N*K", depth="1 + ceil(log2 K)")
def bmm(call: OpCall) -> Cost:
    a = call.args[0]
    return contraction(call.out.numel, a.shape[-1])


@register(aten.addmm, aten.baddbmm, aten.addmv, aten.addbmm,
          work="2*numel(out)*K + numel(out) (addbmm: K = B*K)", depth="2 + ceil(log2 K)")
def add_product(call: OpCall) -> Cost:
    """self + mat1 @ mat2: the product, then the bias add (addbmm also sums over the batch)."""
    a = call.args[1]
    k = a.shape[-1]
    if str(call.op).startswith("aten.addbmm"):
        k = k * a.shape[0]
    return contraction(call.out.numel, k, bias=True)


@register(aten.mv, aten.dot, aten.vdot, aten.inner, aten.outer, aten.ger,
          work="2*numel(out)*K (outer/ger: numel(out))", depth="1 + ceil(log2 K) (outer/ger: 1)")
def vector_product(call: OpCall) -> Cost:
    a = call.args[0]
    if str(call.op).startswith(("aten.outer", "aten.ger")):
        return Cost(call.out.numel, 1)
    return contraction(call.out.numel, a.shape[-1])


@register(aten.matmul, work="2*numel(out)*K", depth="1 + ceil(log2 K)")
def matmul(call: OpCall) -> Cost:
    """Broadcasting matmul: every output element contracts the shared last axis of the first operand."""
    a = call.args[0]
    return contraction(call.out.numel, a.shape[-1])


@register(aten.linear, work="2*numel(out)*K (+ numel(out) with bias)", depth="1 + ceil(log2 K) (+1 with bias)")
def linear(call: OpCall) -> Cost:
    """x @ W.T (+ b): contraction over in_features, plus the bias add when a bias is given."""
    x = call.args[0]
    bias = call.arg("bias")
    return contraction(call.out.numel, x.shape[-1], bias=bias is not None)


@register(aten.einsum, work="lone letters summed (numel), then 2*out*K per pairwise contraction left to right",
          depth="sum over the pairwise chain of 1 + ceil(log2 K) (+ ceil(log2) of pre-summed letters)")
def einsum(call: OpCall) -> Cost:
    """As at::einsum computes it (without opt_einsum): letters only one operand has and the output lacks are
    summed out first (tree reduce, no FLOPs; a lone operand is just that sum, or a free view); then pairwise
    contraction left to right, each pair a contraction over the letters it consumes, or an elementwise product
    when it consumes none. FLOPs equal flop_counter's count of the bmm calls einsum makes."""
    equation = call.args[0].replace(" ", "")
    operands = list(call.args[1])
    lhs, arrow, out = equation.partition("->")
    inputs = lhs.split(",")
    sizes: dict[str, sympy.Expr] = {}
    expanded = []
    ell_letters = None
    for spec, t in zip(inputs, operands):
        letters = _expand_ellipsis(spec, t.ndim)
        ell = [c for c in letters if c.startswith("...")]
        if ell and (ell_letters is None or len(ell) > len(ell_letters)):
            ell_letters = ell
        for c, s in zip(letters, t.shape):
            if c not in sizes or sizes[c] == 1:
                sizes[c] = s
        expanded.append(letters)
    if not arrow:
        # implicit output: letters appearing exactly once, in alphabetical order
        counts: dict[str, int] = {}
        for letters in expanded:
            for c in letters:
                counts[c] = counts.get(c, 0) + 1
        out_letters = [c for c in sorted(counts) if counts[c] == 1 and not c.startswith("...")]
        out_letters = (ell_letters or []) + out_letters
    else:
        out_letters = _expand_ellipsis(out, len(ell_letters or []) + len(out.replace("...", "")))
    # torch's at::einsum first sums out, per operand, the letters no other operand and not the output has
    # (a tree reduce: no multiply, no FLOPs), then contracts the operands pairwise left to right.
    counts: dict[str, int] = {}
    for letters in expanded:
        for c in dict.fromkeys(letters):
            counts[c] = counts.get(c, 0) + 1
    pre = []
    for i, letters in enumerate(expanded):
        letters = list(dict.fromkeys(letters))  # a repeated letter takes the diagonal (a view)
        lone = [c for c in letters if c not in out_letters and (counts[c] == 1 or len(expanded) == 1)]
        pre.append(_sum_cost(letters, lone, sizes))
        expanded[i] = [c for c in letters if c not in lone]
    if len(expanded) == 1:
        return pre[0]
    work, flops, depth = pre[0].work, pre[0].flops, pre[0].depth
    current = expanded[0]
    for i, nxt in enumerate(expanded[1:], start=1):
        later = set(out_letters).union(*[set(e) for e in expanded[i + 1 :]])
        union = list(dict.fromkeys(current + nxt))
        reduced = [c for c in union if c not in later]
        step = _pair_cost(union, reduced, sizes)
        # the pair starts when both the running result and the next operand's own sums are done
        work, flops = work + pre[i].work + step.work, flops + pre[i].flops + step.flops
        depth = sympy.Max(depth, pre[i].depth) + step.depth
        current = [c for c in union if c in later]
    return Cost(work, depth, flops)


def _sum_cost(letters, summed, sizes) -> Cost:
    """Summing out `summed` letters of one operand: a tree over their product, work numel (free when none)."""
    k = numel([sizes[c] for c in summed])
    if k == 1:  # nothing to sum (no letters, or broadcast letters of size 1: a squeeze)
        return Cost()
    return Cost(numel([sizes[c] for c in letters]), clog2(k))


def _pair_cost(letters, reduced, sizes) -> Cost:
    space = numel([sizes[c] for c in letters])
    if not reduced:
        return Cost(space, 1)
    k = numel([sizes[c] for c in reduced])
    out_numel = sympy.cancel(space / k)
    return contraction(out_numel, k)


def _expand_ellipsis(spec: str, ndim: int) -> list[str]:
    if "..." not in spec:
        return list(spec)
    head, tail = spec.split("...")
    n_ell = ndim - len(head) - len(tail)
    # broadcast dims align from the right, so name them by their distance from the end
    return list(head) + [f"...{n_ell - j}" for j in range(n_ell)] + list(tail)

