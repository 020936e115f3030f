"""Matrix products: 2 FLOPs per multiply-add (torch.utils.flop_counter), depth 1 multiply + a log-depth sum tree."""

from __future__ import annotations

import sympy
from torch import ops

from ..cost import Cost
from ..symbols import clog2, numel
from .registry import OpCall, register

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


@register(aten.mm)
def mm(call: OpCall) -> Cost:
    a = call.args[0]
    return contraction(call.out.numel, a.shape[-1])


@register(aten.bmm)
def bmm(call: OpCall) -> Cost:
    a = call.args[0]
    return contraction(call.out.numel, a.shape[-1])


@register(aten.addmm, aten.baddbmm, aten.addmv, aten.addbmm)
def add_product(call: OpCall) -> Cost:
    """self + mat1 @ mat2: the product, then the bias add (addbmm also sums over the batch)."""
    a = call.args[1]
    k = a.shape[-1]
    if str(call.op).startswith("aten.addbmm"):
        k = k * a.shape[0]
    return contraction(call.out.numel, k, bias=True)


@register(aten.mv, aten.dot, aten.vdot, aten.inner, aten.outer, aten.ger)
def vector_product(call: OpCall) -> Cost:
    a = call.args[0]
    if str(call.op).startswith(("aten.outer", "aten.ger")):
        return Cost(call.out.numel, 1)
    return contraction(call.out.numel, a.shape[-1])


@register(aten.matmul)
def matmul(call: OpCall) -> Cost:
    """Broadcasting matmul: every output element contracts the shared last axis of the first operand."""
    a = call.args[0]
    return contraction(call.out.numel, a.shape[-1])


@register(aten.linear)
def linear(call: OpCall) -> Cost:
    """x @ W.T (+ b): contraction over in_features, plus the bias add when a bias is given."""
    x = call.args[0]
    bias = call.arg("bias")
    return contraction(call.out.numel, x.shape[-1], bias=bias is not None)


@register(aten.einsum)
def einsum(call: OpCall) -> Cost:
    """Pairwise contraction left to right (torch's order without opt_einsum); each pair costs a contraction
    over the letters it consumes, or an elementwise product when it consumes none."""
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
    total = Cost()
    current = expanded[0]
    if len(expanded) == 1:
        reduced = [c for c in set(current) if c not in out_letters]
        return _pair_cost(current, reduced, sizes)
    for i, nxt in enumerate(expanded[1:], start=1):
        later = set(out_letters).union(*[set(e) for e in expanded[i + 1 :]])
        union = list(dict.fromkeys(current + nxt))
        reduced = [c for c in union if c not in later]
        total = total + _pair_cost(union, reduced, sizes)
        current = [c for c in union if c in later]
    return total


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

