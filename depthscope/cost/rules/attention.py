"""Scaled dot-product attention, fused: QK^T, scale, mask, softmax, dropout, times V (as the math path computes it)."""

from __future__ import annotations

from torch import ops

from depthscope.cost.value import Cost
from depthscope.symbols import numel
from depthscope.cost.rules.matmul import contraction
from depthscope.cost.rules.reduction import softmax_cost
from depthscope.cost.registry import OpCall, TensorMeta, register

aten = ops.aten


def attention_cost(q: TensorMeta, k: TensorMeta, v: TensorMeta, masked: bool, dropout: bool) -> Cost:
    """Batch dims B = q.shape[:-2], L queries, S keys, head dims E (q, k) and Ev (v).

    FLOPs 2*B*L*S*E + 2*B*L*S*Ev, as flop_counter's sdpa_flop_count. Depth: QK^T 1 + ceil(log2 E); scale 1;
    mask 1; softmax over S 2 ceil(log2 S) + 3; dropout 2 (draw the mask, multiply); times V 1 + ceil(log2 S).
    """
    batch = numel(q.shape[:-2])
    length, e = q.shape[-2], q.shape[-1]
    s, ev = k.shape[-2], v.shape[-1]
    scores = TensorMeta(tuple(q.shape[:-2]) + (length, s))
    cost = contraction(scores.numel, e)            # Q K^T
    cost = cost + Cost(scores.numel, 1)             # * scale
    if masked:
        cost = cost + Cost(scores.numel, 1)         # + mask (or causal fill)
    cost = cost + softmax_cost(scores, s)
    if dropout:
        cost = cost + Cost(2 * scores.numel, 2)
    return cost + contraction(batch * length * ev, s)  # P V


def _sdpa(call: OpCall) -> Cost:
    q, k, v = call.args[0], call.args[1], call.args[2]
    mask = call.arg("attn_mask", call.arg("attn_bias"))
    masked = bool(call.arg("is_causal", False)) or isinstance(mask, TensorMeta)
    dropout = (call.arg("dropout_p", 0.0) or 0.0) > 0
    return attention_cost(q, k, v, masked, dropout)


register(
    aten.scaled_dot_product_attention,
    aten._scaled_dot_product_attention_math,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_cudnn_attention,
    work="2*B*L*S*E + 2*B*L*S*Ev (FLOPs) + 6*B*L*S (scale, softmax) [+ B*L*S mask] [+ 2*B*L*S dropout]",
    depth="(1 + ceil(log2 E)) + 1 [+1 mask] + (2 ceil(log2 S) + 3) [+2 dropout] + (1 + ceil(log2 S))",
)(_sdpa)
