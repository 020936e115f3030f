"""I/O against a fast memory of M bytes: the tiled algorithms' traffic for ops that beat streaming.

Every other op streams: it takes its unfused bytes. The derivations and their sources are in docs/cost-model.md
("I/O complexity"); each formula is an upper bound from ceil(x) <= x + 1 and tends to the op's bytes as M grows.
"""

from __future__ import annotations

from typing import Callable

import sympy
import torch

from depthscope.cost.registry import OpCall, TensorMeta
from depthscope.cost.traffic import FAST_MEMORY, itemsize, nbytes, registrar
from depthscope.cost.value import Cost
from depthscope.cost.variants import functional_of
from depthscope.symbols import numel

aten = torch.ops.aten
IoRule = Callable[[OpCall, Cost], sympy.Expr]
IO_RULES: dict = {}


def call_io(call: OpCall, cost: Cost) -> sympy.Expr:
    """The call's I/O: its registered tiled bound, else its bytes (a streaming op)."""
    rule = IO_RULES.get(call.op) or IO_RULES.get(functional_of(call.op))
    return rule(call, cost) if rule is not None else cost.bytes


def io_rule(*ops) -> Callable[[IoRule], IoRule]:
    """Register an I/O rule (OpCall, Cost with bytes) -> I/O for every overload of the given ops."""
    return registrar(IO_RULES, *ops)


def tiled_extra(a: TensorMeta, b: TensorMeta, out: TensorMeta, macs: sympy.Expr) -> sympy.Expr:
    """Bytes a tiled product moves beyond reading A and B once and writing C once: (s_A + s_B) * macs / T.

    C[m, p] = A[m, k] B[k, p] in tiles of side T = sqrt(M / (3 s)) (a tile each of A, B and C fill M) reads A
    ceil(p/T) <= p/T + 1 times and B ceil(m/T) times; Hong and Kung 1981 bound any schedule by Omega(m k p / sqrt(M))."""
    s = max(itemsize(a.dtype), itemsize(b.dtype), itemsize(out.dtype))
    return (itemsize(a.dtype) + itemsize(b.dtype)) * macs * sympy.sqrt(3 * s) / sympy.sqrt(FAST_MEMORY)


def _operands(call: OpCall) -> tuple:
    name = str(call.op).split(".")[1]
    if name in ("addmm", "baddbmm", "addmv", "addbmm"):
        return call.args[1], call.args[2]
    if name == "einsum":
        return tuple(call.args[1][:2])
    return call.args[0], call.args[1]


@io_rule(aten.mm, aten.bmm, aten.addmm, aten.baddbmm, aten.addmv, aten.addbmm, aten.mv, aten.dot, aten.matmul,
         aten.linear, aten.einsum, aten.convolution, aten._convolution, aten.conv1d, aten.conv2d, aten.conv3d,
         aten.conv_transpose1d, aten.conv_transpose2d, aten.conv_transpose3d)
def tiled_product(call: OpCall, cost: Cost) -> sympy.Expr:
    """Matmul family and convolution (as an implicit GEMM, m = output positions, k = fan-in, p = channels):
    bytes + the tiles' re-reads; multiply-adds are half the rule's FLOPs."""
    operands = _operands(call)
    if len(operands) < 2 or not all(isinstance(t, TensorMeta) for t in operands) or not call.outputs:
        return cost.bytes
    return cost.bytes + tiled_extra(operands[0], operands[1], call.out, cost.flops / 2)


@io_rule(aten.scaled_dot_product_attention, aten._scaled_dot_product_flash_attention,
         aten._scaled_dot_product_flash_attention_for_cpu, aten._scaled_dot_product_efficient_attention,
         aten._scaled_dot_product_cudnn_attention)
def flash_attention(call: OpCall, cost: Cost) -> sympy.Expr:
    """FlashAttention (Dao et al. 2022, Algorithm 1) per head: initialise O, l, m; read each K_j, V_j block once;
    for each of Tc = ceil(S / Bc) key blocks read Q, O, l, m and write O, l, m back; Bc = ceil(M / (4 d s))."""
    q, k, v = call.args[0], call.args[1], call.args[2]
    heads = numel(q.shape[:-2])
    length, e, keys, ev = q.shape[-2], q.shape[-1], k.shape[-2], v.shape[-1]
    s = itemsize(q.dtype)
    d = e if e == ev else sympy.Max(e, ev)
    blocks = 4 * d * s * keys / FAST_MEMORY + 1  # Tc = ceil(S / Bc) <= S / (M / (4 d s)) + 1
    per_head = length * ev + 2 * length + keys * (e + ev) + blocks * length * (e + 2 * ev + 4)
    mask = call.arg("attn_mask", call.arg("attn_bias"))
    return sympy.expand(s * heads * per_head + (nbytes(mask) if isinstance(mask, TensorMeta) else 0))


__all__ = ["IO_RULES", "call_io", "flash_attention", "io_rule", "tiled_extra", "tiled_product"]
