"""Backward ops of training graphs (torch.export.experimental._export_forward_backward, AOT autograd).

Each rule follows the gradient formula as the kernel computes it: the independent gradients (input, weight, bias)
run in parallel (work adds, depth is the max), reductions over the batch are trees, scatters back through indices
are accumulating scatters (reductions over the colliding sources). matmul gradients are mm/bmm calls, costed by
their own rules.
"""

from __future__ import annotations

import math

import sympy
from torch import ops

from depthscope.cost.value import FREE, Cost
from depthscope.symbols import ONE, clog2, numel
from depthscope.cost.rules.elementwise import elementwise
from depthscope.cost.rules.indexing import accumulate
from depthscope.cost.rules.matmul import contraction
from depthscope.cost.rules.pooling import adaptive_windows, kernel_window
from depthscope.cost.rules.reduction import tree_reduce
from depthscope.cost.registry import OpCall, TensorMeta, register

aten = ops.aten


def _packets(*names):
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


def _parallel(costs) -> Cost:
    costs = [c for c in costs if c is not None]
    if not costs:
        return FREE
    total = costs[0]
    for c in costs[1:]:
        total = total | c
    return total


def _mask(call: OpCall, n: int, name: str = "output_mask") -> list:
    mask = call.arg(name)
    return [bool(m) for m in mask] if mask is not None else [True] * n


# ---------------------------------------------------------------------------------------------
# Elementwise gradients: one operation per element of the gradient (torch tags some of them pointwise).

register(*_packets(
    "threshold_backward", "gelu_backward", "silu_backward", "tanh_backward", "sigmoid_backward",
    "hardtanh_backward", "leaky_relu_backward", "elu_backward", "hardswish_backward", "hardsigmoid_backward",
    "softplus_backward", "mish_backward", "log_sigmoid_backward", "glu_backward", "native_dropout_backward",
    "rrelu_with_noise_backward", "logit_backward", "hardshrink_backward", "softshrink_backward",
    "mse_loss_backward", "l1_loss_backward", "smooth_l1_loss_backward", "huber_loss_backward",
    "binary_cross_entropy_backward", "soft_margin_loss_backward",
))(elementwise)


@register(aten._prelu_kernel_backward, work="2 numel (grad input, grad * x) + numel (sum per channel)",
          depth="1 + ceil(log2(numel / C))")
def prelu_backward(call: OpCall) -> Cost:
    """grad input elementwise; grad weight: grad * x elementwise, then summed over all but the channel dim."""
    x, weight = call.args[1], call.args[2]
    n = x.numel
    k = sympy.cancel(n / weight.numel) if weight.numel != 1 else n
    return Cost(n, 1) | (Cost(n, 1) + tree_reduce(x, k))


# ---------------------------------------------------------------------------------------------
# Convolution


def _conv_flops(x_shape, w_shape, out_shape, transposed: bool):
    """flop_counter.conv_flop_count on symbolic shapes."""
    conv_shape = (x_shape if transposed else out_shape)[2:]
    return 2 * x_shape[0] * numel(conv_shape) * w_shape[0] * w_shape[1] * numel(w_shape[2:])


def _t(shape):
    return (shape[1], shape[0]) + tuple(shape[2:])


@register(aten.convolution_backward,
          work="grad input 2*out*(C_out/groups)*prod(k) | grad weight 2*N*prod(out)*C_out*(C_in/groups)*prod(k) | "
               "grad bias numel(grad_out), by output_mask (FLOPs as flop_counter.conv_backward_flop)",
          depth="max(1 + ceil(log2(fan-out of an input)), 1 + ceil(log2(N*prod(out spatial))), "
                "ceil(log2(N*prod(out spatial))))")
def convolution_backward(call: OpCall) -> Cost:
    """grad input = the transposed convolution of grad_out with the weight; grad weight = a convolution of the input
    with grad_out, every weight summing over N * out positions; grad bias = a sum of grad_out per channel.
    The three run in parallel. FLOPs equal flop_counter's conv_backward_flop, which counts grad weight over all
    C_in * C_out channel pairs also for grouped convolutions; work counts the C_out * C_in/groups pairs."""
    grad, x, w = call.args[0], call.args[1], call.args[2]
    transposed = bool(call.arg("transposed", False))
    groups = call.arg("groups", 1) or 1
    mask = _mask(call, 3)
    kernel = numel(w.shape[2:])
    grad_spatial = numel(grad.shape[2:])
    x_spatial = numel(x.shape[2:])
    outputs = list(call.outputs)
    branches = []
    if mask[0]:
        gi_shape = outputs[0].shape if outputs and isinstance(outputs[0], TensorMeta) else x.shape
        flops = _conv_flops(grad.shape, w.shape, gi_shape, not transposed)
        fan = (w.shape[1] if transposed else sympy.cancel(w.shape[0] / groups)) * kernel
        branches.append(Cost(flops, 1 + clog2(fan), flops))
    if mask[1]:
        if transposed:
            flops = _conv_flops(_t(grad.shape), _t(x.shape), _t(w.shape), False)
            summed = x.shape[0] * x_spatial
        else:
            flops = _conv_flops(_t(x.shape), _t(grad.shape), _t(w.shape), False)
            summed = grad.shape[0] * grad_spatial
        true_work = 2 * w.numel * summed
        branches.append(Cost(true_work, 1 + clog2(summed), flops))
    if mask[2]:
        branches.append(Cost(grad.numel, clog2(grad.shape[0] * grad_spatial)))
    return _parallel(branches)


# ---------------------------------------------------------------------------------------------
# Normalisation


def standardize_backward(n, k, stat_rows_k, weight: bool, mask) -> Cost:
    """Gradients of y = xhat * w + b with xhat = (x - mean) * rstd over rows of k values.

    xhat (2 numel, depth 2) [| g = grad * w (numel, 1)]; then
    grad x = rstd/k (k g - sum g - xhat sum(g xhat)): two sums (numel + 2 numel, depth 1 + ceil(log2 k)) in parallel,
             then 5 numel + rows, depth 4;
    grad w = sum over the other axis (stat_rows_k values) of grad * xhat: 2 numel, depth 1 + ceil(log2 stat_rows_k);
    grad b = sum of grad over that axis: numel, depth ceil(log2 stat_rows_k), needing no xhat.
    """
    rows = sympy.cancel(n / k)
    prep = Cost(2 * n, 2)
    if weight:
        prep = prep | Cost(n, 1)
    after = []
    if mask[0]:
        sums = Cost(n, clog2(k)) | Cost(2 * n, 1 + clog2(k))
        after.append(sums + Cost(5 * n + rows, 4))
    if mask[1] and weight:
        after.append(Cost(2 * n, 1 + clog2(stat_rows_k)))
    cost = prep + _parallel(after) if after else FREE
    if len(mask) > 2 and mask[2]:
        cost = cost | Cost(n, clog2(stat_rows_k))
    return cost


@register(aten.native_layer_norm_backward,
          work="xhat 2N (+ N grad*w) + grad x 8N + rows + grad w 2N + grad b N (by output_mask), N = numel",
          depth="2 + max(5 + ceil(log2 k), 1 + ceil(log2 rows))")
def layer_norm_backward(call: OpCall) -> Cost:
    x = call.args[1]
    k = numel(call.arg("normalized_shape"))
    rows = sympy.cancel(x.numel / k)
    return standardize_backward(x.numel, k, rows, isinstance(call.arg("weight"), TensorMeta), _mask(call, 3))


@register(aten.native_group_norm_backward,
          work="as layer norm backward with k = C/group * HxW, weight and bias summed over N*HxW",
          depth="2 + max(5 + ceil(log2 k), 1 + ceil(log2(N*HxW)))")
def group_norm_backward(call: OpCall) -> Cost:
    x = call.args[1]
    n_batch, channels, hxw, group = call.arg("N"), call.arg("C"), call.arg("HxW"), call.arg("group")
    k = sympy.cancel(sympy.S(channels) / group * hxw)  # C and group are Python ints in a graph: keep it exact
    return standardize_backward(x.numel, k, n_batch * hxw, isinstance(call.arg("weight"), TensorMeta),
                                _mask(call, 3))


@register(aten.native_batch_norm_backward, aten.batch_norm_backward,
          work="training: as layer norm backward with k = N*H*W per channel; eval: 2C + N (grad x) | 4N (grad w) | N",
          depth="training: 2 + 5 + ceil(log2 k); eval: max(3, 3 + ceil(log2 k))")
def batch_norm_backward(call: OpCall) -> Cost:
    """Training: statistics per channel over k = N*H*W values, as layer norm backward. Eval: the running
    statistics are constants, so grad x = grad * (w * rstd) (a per-channel scale, 2 C at depth 2, then numel at
    depth 1); grad w and grad b are sums over k as in training."""
    x = call.args[1]
    channels = x.shape[1] if x.ndim > 1 else x.shape[0]
    k = sympy.cancel(x.numel / channels)
    training = call.arg("train") if str(call.op).startswith("aten.native_batch_norm_backward") else call.arg("update")
    weight = isinstance(call.arg("weight"), TensorMeta)
    mask = _mask(call, 3)
    if training:
        return standardize_backward(x.numel, k, k, weight, mask)
    n = x.numel
    branches = []
    if mask[0]:
        branches.append(Cost(2 * channels, 2) + Cost(n, 1))
    if mask[1] and weight:
        branches.append(Cost(2 * n, 2) + Cost(n, 1) + Cost(n, clog2(k)))
    if mask[2]:
        branches.append(Cost(n, clog2(k)))
    return _parallel(branches)


@register(aten._fused_rms_norm_backward,
          work="grad x: 6N + rows; grad w: 2N (by output_mask)", depth="max(2 + ceil(log2 k) + 4, 2 + ceil(log2 rows))")
def rms_norm_backward(call: OpCall) -> Cost:
    """y = x * rstd * w: g = grad * w (1); grad x = rstd (g - x * rstd^2 * mean(g x)): g x (1), sum tree, then
    scale by rstd^3 / k per row, multiply by x, subtract, multiply by rstd (depth 3 + 1); grad w = sum over rows of
    grad * x * rstd."""
    x = call.args[1]
    k = numel(call.arg("normalized_shape"))
    n = x.numel
    rows = sympy.cancel(n / k)
    mask = _mask(call, 2)
    branches = []
    if mask[0]:
        branches.append(Cost(2 * n, 2) + Cost(n, clog2(k)) + Cost(rows, 1) + Cost(3 * n, 3))
    if len(mask) > 1 and mask[1] and isinstance(call.arg("weight"), TensorMeta):
        branches.append(Cost(2 * n, 2) + Cost(n, clog2(rows)))
    return _parallel(branches)


# ---------------------------------------------------------------------------------------------
# Softmax


@register(aten._softmax_backward_data, work="4 numel", depth="3 + ceil(log2 k)")
def softmax_backward(call: OpCall) -> Cost:
    """grad x = y * (g - sum(g * y)): multiply (1), sum tree, subtract (1), multiply (1)."""
    grad = call.args[0]
    k = grad.size(call.arg("dim"))
    n = grad.numel
    return Cost(n, 1) + tree_reduce(grad, k) + Cost(2 * n, 2)


@register(aten._log_softmax_backward_data, work="4 numel", depth="max(ceil(log2 k), 1) + 2")
def log_softmax_backward(call: OpCall) -> Cost:
    """grad x = g - exp(y) * sum(g): the sum tree and exp(y) in parallel, then multiply and subtract."""
    grad = call.args[0]
    k = grad.size(call.arg("dim"))
    n = grad.numel
    return (tree_reduce(grad, k) | Cost(n, 1)) + Cost(2 * n, 2)


# ---------------------------------------------------------------------------------------------
# Embedding and pooling: scatters back through indices


@register(aten.embedding_dense_backward,
          work="V*D (zero fill) + numel(grad) (accumulating scatter) (+ counts and scale with scale_grad_by_freq)",
          depth="2 + ceil(log2 numel(indices)) (+ 2 + ceil(log2 numel(indices)) + 1 with scale_grad_by_freq)")
def embedding_dense_backward(call: OpCall) -> Cost:
    """Every gradient row is added into its token's weight row; all indices may name the same token, so the
    rows colliding on one weight row are combined by a tree over numel(indices)."""
    grad, indices = call.args[0], call.args[1]
    out_numel = call.out.numel
    cost = FREE
    if call.arg("scale_grad_by_freq", False):
        count_rows = sympy.cancel(out_numel / grad.shape[-1]) if grad.ndim else out_numel
        cost = accumulate(count_rows, indices.numel, indices.numel) + Cost(grad.numel, 1)
    return cost + accumulate(out_numel, grad.numel, indices.numel)


def _overlap(kernel, stride, dilation=None) -> sympy.Expr:
    """Windows covering one input position: prod over dims of ceil(k / (s / gcd(s, d)))."""
    dilation = dilation or [1] * len(kernel)
    total = ONE
    for k, s, d in zip(kernel, stride, dilation):
        k, s, d = int(k), int(s), int(d)
        total = total * -(-k // (s // math.gcd(s, d)))
    return sympy.Integer(total)


def _window(call: OpCall):
    kernel = kernel_window(call)
    stride = list(call.arg("stride") or [])
    if not stride:
        stride = kernel
    elif len(stride) == 1:
        stride = stride * len(kernel)
    dilation = list(call.arg("dilation") or []) or None
    if dilation is not None and len(dilation) == 1:
        dilation = dilation * len(kernel)
    return kernel, stride, dilation


@register(aten.max_pool2d_with_indices_backward, aten.max_pool3d_with_indices_backward,
          work="numel(input) + numel(grad_out)", depth="2 + ceil(log2 c), c = overlapping windows per input")
def max_pool_backward(call: OpCall) -> Cost:
    """Each output gradient goes to its argmax: an accumulating scatter where the c windows covering an input may
    all pick it."""
    grad, x = call.args[0], call.args[1]
    kernel, stride, dilation = _window(call)
    return accumulate(x.numel, grad.numel, _overlap(kernel, stride, dilation))


@register(aten.avg_pool2d_backward, aten.avg_pool3d_backward,
          work="numel(grad_out) (divide) + numel(grad_out) * w (spread)", depth="1 + 1 + ceil(log2 c)")
def avg_pool_backward(call: OpCall) -> Cost:
    """Divide each output gradient by its window size, spread it over the w window inputs, sum the c overlapping
    windows' shares at every input."""
    grad = call.args[0]
    kernel, stride, _ = _window(call)
    w = numel(kernel)
    return Cost(grad.numel, 1) + Cost(grad.numel * w, 1 + clog2(_overlap(kernel, stride)))


def _adaptive_backward_shape(call: OpCall):
    grad, x = call.args[0], call.args[1]
    spatial = 3 if "3d" in str(call.op) else 2
    out_size = grad.shape[grad.ndim - spatial:]
    spatial_in = x.shape[x.ndim - len(out_size):]
    rows = numel(x.shape[: x.ndim - len(out_size)])
    sums, overlap = [], ONE
    for i, o in zip(spatial_in, out_size):
        total, _ = adaptive_windows(i, o)
        sums.append(total)
        if isinstance(i, (int, sympy.Integer)) and isinstance(o, (int, sympy.Integer)):
            i, o = int(i), int(o)
            cover = [0] * i
            for j in range(o):
                for p in range((j * i) // o, -((-(j + 1) * i) // o)):
                    cover[p] += 1
            overlap = overlap * max(cover)
        else:
            overlap = overlap * sympy.ceiling(sympy.S(o) / i)
    return rows * numel(sums), overlap


@register(aten._adaptive_avg_pool2d_backward, aten._adaptive_avg_pool3d_backward,
          work="numel(grad_out) + rows * prod(sum of window lengths)", depth="1 + 1 + ceil(log2 c)")
def adaptive_avg_pool_backward(call: OpCall) -> Cost:
    """As average pooling backward with adaptive windows (c = windows covering an input: exact for static sizes,
    ceil(out/in) per symbolic dim)."""
    grad = call.args[0]
    reads, overlap = _adaptive_backward_shape(call)
    return Cost(grad.numel, 1) + Cost(reads, 1 + clog2(overlap))


@register(aten.adaptive_max_pool2d_backward, aten.adaptive_max_pool3d_backward,
          work="numel(input) + numel(grad_out)", depth="2 + ceil(log2 c)")
def adaptive_max_pool_backward(call: OpCall) -> Cost:
    grad, x = call.args[0], call.args[1]
    _, overlap = _adaptive_backward_shape(call)
    return accumulate(x.numel, grad.numel, overlap)


# ---------------------------------------------------------------------------------------------
# Attention


def attention_backward_cost(q: TensorMeta, k: TensorMeta, v: TensorMeta, masked: bool, dropout: bool) -> Cost:
    """The fused kernels' backward (FlashAttention-2 style), batch dims B of q (query heads), L, S, E, Ev:

    recompute S = Q K^T (2BLSE), scale (BLS) [, mask (BLS)], P = exp(S - logsumexp) (2BLS);
    in parallel dP = dO V^T (2BLSEv) and D = rowsum(dO * O) (2BLEv);
    [dropout: regenerate the mask, apply to P and dP (2BLS, depth 2)];
    dS = P * (dP - D) (2BLS, depth 2), scale (BLS);
    then dQ = dS K (2BLSE) and dK = dS^T Q (2BSLE) in parallel, with dV = P^T dO (2BSLEv).
    FLOPs: the five products, flop_counter's sdpa_backward_flop_count.
    """
    batch = numel(q.shape[:-2])
    length, e = q.shape[-2], q.shape[-1]
    s, ev = k.shape[-2], v.shape[-1]
    bls = batch * length * s
    recompute = contraction(bls, e) + Cost(bls, 1)
    if masked:
        recompute = recompute + Cost(bls, 1)
    recompute = recompute + Cost(2 * bls, 2)
    d_p = contraction(bls, ev)
    d_row = Cost(2 * batch * length * ev, 1 + clog2(ev))
    front = recompute | d_p | d_row
    tail = Cost(2 * bls, 2) if dropout else FREE
    tail = tail + Cost(2 * bls, 2) + Cost(bls, 1) + (contraction(batch * length * e, s) | contraction(batch * s * e, length))
    return front + (tail | contraction(batch * s * ev, length))


_SDPA_BACKWARD = _packets(
    "_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention_backward",
    "_scaled_dot_product_fused_attention_overrideable_backward",
)


@register(*_SDPA_BACKWARD,
          work="2*B*L*S*(3E + 2Ev) (FLOPs: recompute QK^T, dP, dV, dQ, dK) + 6*B*L*S [+ B*L*S mask] "
               "[+ 2*B*L*S dropout] + 2*B*L*Ev",
          depth="max(1 + ceil(log2 E) + 3 [+1 mask], 1 + ceil(log2 Ev)) [+2 dropout] + 3 + 1 + ceil(log2 max(S, L))")
def sdpa_backward(call: OpCall) -> Cost:
    q, k, v = call.args[1], call.args[2], call.args[3]
    bias = call.arg("attn_mask", call.arg("attn_bias"))
    masked = bool(call.arg("is_causal", False)) or isinstance(bias, TensorMeta)
    dropout = float(call.arg("dropout_p", 0.0) or 0.0) > 0
    return attention_backward_cost(q, k, v, masked, dropout)
