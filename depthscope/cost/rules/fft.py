"""Fast Fourier transforms as radix-2 butterfly networks.

A transform of length k is ceil(log2 k) butterfly stages; each stage does about 5 k real operations (one complex
multiply and two complex adds per butterfly pair: the classic 5 k log2 k count). So a row of length k costs work
5 k ceil(log2 k), depth ceil(log2 k). A multi-dimensional transform runs one dimension after another: work
sum over transformed dims of 5 N ceil(log2 k_d) and depth sum of ceil(log2 k_d), where N is the numel of the full
(real or complex) signal; onesided halving is not credited. A normalisation (1/n or 1/sqrt(n)) adds one multiply
per output element. Padding or trimming to a requested length is folded into the transform.
"""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import FREE, Cost
from depthscope.symbols import ONE, clog2
from depthscope.cost.registry import OpCall, register

aten = ops.aten


def fft_cost(full_numel, lengths, normalized: bool, out_numel) -> Cost:
    """Transforms along each length in sequence over a signal of full_numel elements, then an optional scale."""
    cost = FREE
    for k in lengths:
        lg = clog2(k)
        cost = cost + Cost(5 * full_numel * lg, lg)
    if normalized:
        cost = cost + Cost(out_numel, 1)
    return cost


def _dims(dims, ndim) -> list:
    return [int(d) % ndim for d in dims]


@register(aten._fft_r2c, aten._fft_c2r, aten._fft_c2c,
          work="sum over transformed dims of 5 * N * ceil(log2 k_d) (+ numel(out) when normalised), N = full signal",
          depth="sum over transformed dims of ceil(log2 k_d) (+1 when normalised)")
def fft_primitive(call: OpCall) -> Cost:
    """The core FFT ops: real-to-complex, complex-to-real (last dim of length last_dim_size), complex-to-complex."""
    x = call.args[0]
    dims = _dims(call.arg("dim"), x.ndim)
    lengths = [x.shape[d] for d in dims]
    full = x.numel
    if str(call.op).startswith("aten._fft_c2r"):
        last = call.arg("last_dim_size")
        full = sympy.cancel(full / lengths[-1] * last)
        lengths[-1] = last
    return fft_cost(full, lengths, int(call.arg("normalization", 0) or 0) != 0, call.out.numel)


_INVERSE = ("ifft", "irfft", "ihfft")
_HALF_TO_FULL = ("irfft", "hfft")  # the input is a one-sided spectrum: the default length is 2 (size - 1)


def _family(call: OpCall) -> str:
    return str(call.op).split(".")[1].removeprefix("fft_")


def _normalized(kind: str, norm) -> bool:
    """torch.fft: "backward" (default) scales the inverse, "forward" the forward transform, "ortho" both."""
    inverse = kind.startswith(_INVERSE)
    if norm is None or norm == "backward":
        return inverse
    if norm == "forward":
        return not inverse
    return True


@register(aten.fft_fft, aten.fft_ifft, aten.fft_rfft, aten.fft_irfft, aten.fft_hfft, aten.fft_ihfft,
          aten.fft_fft2, aten.fft_ifft2, aten.fft_rfft2, aten.fft_irfft2, aten.fft_hfft2, aten.fft_ihfft2,
          aten.fft_fftn, aten.fft_ifftn, aten.fft_rfftn, aten.fft_irfftn, aten.fft_hfftn, aten.fft_ihfftn,
          work="sum over transformed dims of 5 * N * ceil(log2 k_d) (+ numel(out) when normalised), N = full signal",
          depth="sum over transformed dims of ceil(log2 k_d) (+1 when normalised)")
def fft(call: OpCall) -> Cost:
    """torch.fft's transforms: the signal length per dim is n / s when given, else the input size
    (irfft, hfft: 2 (size - 1) on the last dim)."""
    x = call.args[0]
    kind = _family(call)
    if kind in ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft"):
        dims = _dims([call.arg("dim", -1)], x.ndim)
        n = call.arg("n")
        sizes = [n] if n is not None else None
    else:
        sizes = call.arg("s")
        dims = call.arg("dim")
        if dims is None:
            dims = list(range(x.ndim - len(sizes), x.ndim)) if sizes is not None else list(range(x.ndim))
        dims = _dims(dims, x.ndim)
    lengths = []
    for i, d in enumerate(dims):
        if sizes is not None:
            lengths.append(sizes[i])
        elif i == len(dims) - 1 and kind.startswith(_HALF_TO_FULL):
            lengths.append(2 * (x.shape[d] - 1))
        else:
            lengths.append(x.shape[d])
    full = x.numel
    for d, k in zip(dims, lengths):
        full = full / x.shape[d] * k
    full = sympy.cancel(full)
    return fft_cost(full, lengths, _normalized(kind, call.arg("norm")), call.out.numel)


@register(aten.stft,
          work="B*F*n_fft (window) + 5*B*F*n_fft*ceil(log2 n_fft) (+ numel(out) normalised), F = frames",
          depth="1 + ceil(log2 n_fft) (+1 normalised)")
def stft(call: OpCall) -> Cost:
    """Window every frame (a multiply), then a length-n_fft transform per frame."""
    x = call.args[0]
    n_fft = call.arg("n_fft")
    out = call.out
    frames = out.shape[-2] if call.arg("return_complex") is False else out.shape[-1]
    batch = sympy.cancel(x.numel / x.shape[-1]) if x.ndim > 1 else ONE
    signal = batch * frames * n_fft
    return Cost(signal, 1) + fft_cost(signal, [n_fft], bool(call.arg("normalized", False)), out.numel)


@register(aten.istft,
          work="5*B*F*n_fft*ceil(log2 n_fft) + B*F*n_fft (window) + B*F*n_fft (overlap-add) + numel(out) (envelope)",
          depth="ceil(log2 n_fft) + 1 + 1 + ceil(log2 ceil(n_fft/hop)) + 1")
def istft(call: OpCall) -> Cost:
    """Inverse transform per frame, window, overlap-add (up to ceil(n_fft/hop) frames meet on a sample: a tree),
    divide by the window envelope."""
    x = call.args[0]
    n_fft = call.arg("n_fft")
    hop = call.arg("hop_length") or sympy.floor(sympy.S(n_fft) / 4)
    frames = x.shape[-1]
    batch = sympy.cancel(x.numel / (x.shape[-1] * x.shape[-2])) if x.ndim > 2 else ONE
    signal = batch * frames * n_fft
    overlap = sympy.ceiling(sympy.S(n_fft) / hop)
    return (fft_cost(signal, [n_fft], bool(call.arg("normalized", False)), signal) + Cost(signal, 1)
            + Cost(signal, 1 + clog2(overlap)) + Cost(call.out.numel, 1))


__all__ = ["fft_cost"]
