"""Resampling: interpolation (upsample / F.interpolate), grid sampling, affine grids and col2im (fold).

Every output element reads a fixed number of inputs and combines them with weights: nearest 1 read, linear 2 per
interpolated dim, cubic 4 per dim. With r reads, work = numel(out) * r and depth = 1 + ceil(log2 r) (weighted reads
at depth 1, then a sum tree). Antialiased (_aa) downsampling widens the filter to interp * in/out per dim.
Backward passes spread each gradient over its r inputs; an input collects from up to r_d * ceil(out_d / in_d)
outputs per dim (a tree).
"""

from __future__ import annotations

import math

import sympy
from torch import ops

from depthscope.cost.value import Cost
from depthscope.symbols import ONE, clog2, numel
from depthscope.cost.rules.indexing import accumulate
from depthscope.cost.registry import OpCall, register

aten = ops.aten


def _packets(*names):
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


def resample(out_numel, reads) -> Cost:
    """Each output: `reads` weighted reads (depth 1) and a sum tree over them."""
    return Cost(out_numel * reads, 1 + clog2(reads))


# taps per interpolated dim
_TAPS = {"nearest": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "bicubic": 4, "lanczos": 6}


def _mode(op) -> tuple[int, bool]:
    """(taps per dim, antialiased) from the op name."""
    name = str(op).split(".")[1].lstrip("_").removeprefix("upsample_")
    aa = "_aa" in name
    for mode, taps in sorted(_TAPS.items(), key=lambda kv: -len(kv[0])):
        if name.startswith(mode):
            return taps, aa
    return 1, aa


def _per_dim_taps(taps: int, aa: bool, size_in, size_out):
    """Taps along one dim: fixed, or with antialiasing on downsampling taps * in/out (rounded up)."""
    if not aa or taps == 1:
        return sympy.Integer(taps)
    return sympy.Max(taps, sympy.ceiling(taps * sympy.S(size_in) / size_out))


def _spatial(call: OpCall, x_shape, out_shape) -> tuple[list, list]:
    dims = next((d for d in (1, 2, 3) if f"{d}d" in str(call.op)), len(x_shape) - 2)
    return list(x_shape[len(x_shape) - dims:]), list(out_shape[len(out_shape) - dims:])


_FORWARD = _packets(
    "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
    "_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d",
    "upsample_linear1d", "upsample_bilinear2d", "upsample_bicubic2d", "upsample_trilinear3d",
    "_upsample_bilinear2d_aa", "_upsample_bicubic2d_aa", "_upsample_lanczos2d_aa",
)


@register(*_FORWARD,
          work="numel(out) * r, r = reads per output (nearest 1, linear 2 per dim, cubic 4 per dim; "
               "antialiased: taps * ceil(in/out) per downsampled dim)",
          depth="1 + ceil(log2 r)")
def upsample(call: OpCall) -> Cost:
    x = call.args[0]
    taps, aa = _mode(call.op)
    ins, outs = _spatial(call, x.shape, call.out.shape)
    reads = numel([_per_dim_taps(taps, aa, i, o) for i, o in zip(ins, outs)])
    return resample(call.out.numel, reads)


_BACKWARD = _packets(*[f"{p}_backward" for p in (
    "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
    "_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d",
    "upsample_linear1d", "upsample_bilinear2d", "upsample_bicubic2d", "upsample_trilinear3d",
    "_upsample_bilinear2d_aa", "_upsample_bicubic2d_aa", "_upsample_lanczos2d_aa")])


@register(*_BACKWARD,
          work="numel(grad_out) * r",
          depth="1 + ceil(log2(prod over dims of r_d * ceil(out_d/in_d))) (fan-in of an input)")
def upsample_backward(call: OpCall) -> Cost:
    """Each output gradient is spread over its r inputs; every input sums what reaches it."""
    grad = call.args[0]
    input_size = list(call.arg("input_size"))
    taps, aa = _mode(call.op)
    ins, outs = _spatial(call, input_size, grad.shape)
    per_dim = [_per_dim_taps(taps, aa, i, o) for i, o in zip(ins, outs)]
    fan_in = numel([r * sympy.ceiling(sympy.S(o) / i) for r, i, o in zip(per_dim, ins, outs)])
    return Cost(grad.numel * numel(per_dim), 1 + clog2(fan_in))


# ---------------------------------------------------------------------------------------------
# grid_sample

_GRID_TAPS = {2: {0: 4, 1: 1, 2: 16}, 3: {0: 8, 1: 1, 2: 64}}  # bilinear/trilinear, nearest, bicubic


def _grid_reads(call: OpCall, x) -> int:
    spatial = 3 if x.ndim == 5 else 2
    mode = int(call.arg("interpolation_mode", 0) or 0)
    return _GRID_TAPS[spatial].get(mode, 1)


@register(*_packets("grid_sampler", "grid_sampler_2d", "grid_sampler_3d", "_grid_sampler_2d_cpu_fallback",
                    "cudnn_grid_sampler"),
          work="numel(grid) (source coordinates) + numel(out) * r (bilinear 4, nearest 1, bicubic 16; 3d: 8, 1)",
          depth="1 + 1 + ceil(log2 r)")
def grid_sample(call: OpCall) -> Cost:
    """Unnormalise each grid point to a source coordinate (depth 1), then weighted reads as interpolation."""
    x, grid = call.args[0], call.args[1]
    return Cost(grid.numel, 1) + resample(call.out.numel, _grid_reads(call, x))


@register(*_packets("grid_sampler_2d_backward", "grid_sampler_3d_backward", "_grid_sampler_2d_cpu_fallback_backward",
                    "cudnn_grid_sampler_backward"),
          work="numel(grid) + [numel(input) + G*C*r (grad input)] + [2*G*C*r (grad grid)], G = grid points",
          depth="1 + max(2 + ceil(log2(r * grid points per image)), 1 + ceil(log2(C*r)))")
def grid_sample_backward(call: OpCall) -> Cost:
    """Coordinates again; grad input is an accumulating scatter (any number of grid points may hit one pixel);
    grad grid sums, per grid point, over the C channels and r taps. Both in parallel."""
    grad, x, grid = call.args[0], call.args[1], call.args[2]
    reads = _grid_reads(call, x)
    contributions = grad.numel * reads
    per_image = sympy.cancel(grid.numel / (grid.shape[0] * grid.shape[-1]))
    grad_input = accumulate(x.numel, contributions, reads * per_image)
    grad_grid = Cost(2 * contributions, 1 + clog2(x.shape[1] * reads))
    mask = call.arg("output_mask") or (True, True)
    branches = [c for c, keep in zip((grad_input, grad_grid), mask) if keep]
    cost = Cost(grid.numel, 1)
    if branches:
        combined = branches[0]
        for b in branches[1:]:
            combined = combined | b
        cost = cost + combined
    return cost


@register(aten.affine_grid_generator,
          work="2 * numel(out) * (D + 1)", depth="1 + ceil(log2(D + 1)), D = spatial dims")
def affine_grid(call: OpCall) -> Cost:
    """Each output coordinate is a dot product of theta's row with the homogeneous base point (D + 1 terms).
    Not counted as FLOPs: flop_counter sees one affine_grid_generator call, not a bmm."""
    theta = call.args[0]
    k = theta.shape[-1]
    return Cost(2 * call.out.numel * k, 1 + clog2(k))


@register(aten.col2im,
          work="numel(out) + numel(in)",
          depth="2 + ceil(log2 c), c = prod over dims of ceil(k / (s / gcd(s, d))) overlapping patches")
def col2im(call: OpCall) -> Cost:
    """fold: an accumulating scatter of the patch columns; a pixel receives one value from each patch covering it."""
    x = call.args[0]
    kernel = list(call.arg("kernel_size"))
    dilation = list(call.arg("dilation"))
    stride = list(call.arg("stride"))
    overlap = ONE
    for k, d, s in zip(kernel, dilation, stride):
        k, d, s = int(k), int(d), int(s)
        period = s // math.gcd(s, d)
        overlap = overlap * -(-k // period)
    return accumulate(call.out.numel, x.numel, overlap)
