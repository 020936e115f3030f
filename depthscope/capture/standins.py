"""Stand-ins used during capture for constructs torch.export cannot keep symbolic.

Both are swapped in only while `standins(...)` is active (one capture) and hold no state of their own: what they
produce lives in the exported graph.

- `nn.LSTM` / `nn.GRU` / `nn.RNN`: the kernels of aten.lstm.input (gru, rnn_tanh, rnn_relu) unbind the sequence, so
  export specialises its length. During capture the modules' own forward runs unchanged (zero initial states,
  unbatched input, argument checks) but its calls to `_VF.lstm` / `gru` / `rnn_tanh` / `rnn_relu` go to
  `depthscope::lstm` ... : custom ops with the aten overloads' schema (input, hx, params, has_biases, num_layers,
  dropout, train, bidirectional, batch_first), a fake kernel that computes the output shapes and an eager kernel
  that calls the aten op. Weights and states are real graph inputs, and the cost rule is the aten rule
  (`depthscope.cost.rules.recurrent.recurrence`), registered for both. Under --train each has an autograd formula
  whose backward is one op too (back-propagation through time, depthscope.capture.recurrent_backward).
- `torch._higher_order_ops.associative_scan`: combine_mode="generic" (the only mode on CPU) unrolls its tree at
  trace time and guards on the scanned length n. The stand-in lowers the call as torch does for
  combine_mode="pointwise" (scanned dim moved to 0, flips for reverse, torch's associative_scan higher-order op),
  without that mode's CUDA-only check. Export then keeps one higher-order node whose subgraph is the combine
  function traced on element-shaped inputs, and engine/control_flow costs it (2(n - 1) combines in
  2 ceil(log2 n) levels, Blelloch).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
import types

import torch
import torch.utils._pytree as pytree

from depthscope.capture.recurrent_backward import BACKWARD_OPS, register_backward
from depthscope.cost.registry import register
from depthscope.cost.rules.recurrent import recurrence

# ---------------------------------------------------------------------------------------------
# Recurrent modules: custom ops mirroring aten.lstm.input, aten.gru.input, aten.rnn_tanh.input, aten.rnn_relu.input.


def _output_like(input: torch.Tensor, state: torch.Tensor, bidirectional: bool, batch_first: bool) -> torch.Tensor:
    """The output sequence: input's leading dims ([T, B] or [B, T]), directions x the state's width; with
    batch_first, like ATen, a transposed view of a time-major buffer."""
    width = (2 if bidirectional else 1) * state.shape[-1]
    if batch_first and input.dim() == 3:
        return input.new_empty((input.shape[1], input.shape[0], width)).transpose(0, 1)
    return input.new_empty((*input.shape[:-1], width))


@torch.library.custom_op("depthscope::lstm", mutates_args=())
def lstm_standin(input: torch.Tensor, hx: list[torch.Tensor], params: list[torch.Tensor], has_biases: bool,
                 num_layers: int, dropout: float, train: bool, bidirectional: bool,
                 batch_first: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """aten.lstm.input under another name: the output sequence, h_n and c_n."""
    out, h, c = torch.lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    return out, h, c


@lstm_standin.register_fake
def _(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    return _output_like(input, hx[0], bidirectional, batch_first), hx[0].new_empty(hx[0].shape), hx[1].new_empty(hx[1].shape)


@torch.library.custom_op("depthscope::gru", mutates_args=())
def gru_standin(input: torch.Tensor, hx: torch.Tensor, params: list[torch.Tensor], has_biases: bool,
                num_layers: int, dropout: float, train: bool, bidirectional: bool,
                batch_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """aten.gru.input under another name: the output sequence and h_n."""
    out, h = torch.gru(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    return out, h


@torch.library.custom_op("depthscope::rnn_tanh", mutates_args=())
def rnn_tanh_standin(input: torch.Tensor, hx: torch.Tensor, params: list[torch.Tensor], has_biases: bool,
                     num_layers: int, dropout: float, train: bool, bidirectional: bool,
                     batch_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """aten.rnn_tanh.input under another name: the output sequence and h_n."""
    out, h = torch.rnn_tanh(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    return out, h


@torch.library.custom_op("depthscope::rnn_relu", mutates_args=())
def rnn_relu_standin(input: torch.Tensor, hx: torch.Tensor, params: list[torch.Tensor], has_biases: bool,
                     num_layers: int, dropout: float, train: bool, bidirectional: bool,
                     batch_first: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """aten.rnn_relu.input under another name: the output sequence and h_n."""
    out, h = torch.rnn_relu(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
    return out, h


def _fake_single_state(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    return _output_like(input, hx, bidirectional, batch_first), hx.new_empty(hx.shape)


gru_standin.register_fake(_fake_single_state)
rnn_tanh_standin.register_fake(_fake_single_state)
rnn_relu_standin.register_fake(_fake_single_state)

# One cost model: the stand-ins are costed by the very rule of the aten ops they stand for.
register(lstm_standin, gru_standin, rnn_tanh_standin, rnn_relu_standin)(recurrence)
# --train: back-propagation through time, one op with its own rule (depthscope.capture.recurrent_backward)
register_backward({"lstm": lstm_standin, "gru": gru_standin, "rnn_tanh": rnn_tanh_standin, "rnn_relu": rnn_relu_standin})

# stand-in op -> the aten overload reports show (what the user's module calls)
_DISPLAY = {
    torch.ops.depthscope.lstm.default: "aten.lstm.input",
    torch.ops.depthscope.gru.default: "aten.gru.input",
    torch.ops.depthscope.rnn_tanh.default: "aten.rnn_tanh.input",
    torch.ops.depthscope.rnn_relu.default: "aten.rnn_relu.input",
    **{op._opoverload: f"backward of aten.{kind}.input" for kind, op in BACKWARD_OPS.items()},
}


class _RecurrentVF:
    """torch._VF as torch.nn.modules.rnn sees it during capture: the padded-input overloads of lstm, gru,
    rnn_tanh and rnn_relu call the stand-in ops; everything else (cells, PackedSequence overloads) is torch's."""

    def __init__(self, vf):
        self._vf = vf

    def __getattr__(self, name):
        return getattr(self._vf, name)

    def lstm(self, *args, **kwargs):
        # lstm.input(input, hx[], params[], ...) vs lstm.data(data, batch_sizes, hx[], params[], ...)
        if len(args) == 9 and not kwargs and not isinstance(args[1], torch.Tensor):
            return torch.ops.depthscope.lstm(*args)
        return self._vf.lstm(*args, **kwargs)

    def _single_state(self, name, args, kwargs):
        # gru.input(input, hx, params[], ...) vs gru.data(data, batch_sizes, hx, params[], ...)
        if len(args) == 9 and not kwargs and isinstance(args[2], (list, tuple)):
            return getattr(torch.ops.depthscope, name)(*args)
        return getattr(self._vf, name)(*args, **kwargs)

    def gru(self, *args, **kwargs):
        return self._single_state("gru", args, kwargs)

    def rnn_tanh(self, *args, **kwargs):
        return self._single_state("rnn_tanh", args, kwargs)

    def rnn_relu(self, *args, **kwargs):
        return self._single_state("rnn_relu", args, kwargs)


@contextlib.contextmanager
def recurrent_standins():
    """Route nn.LSTM / nn.GRU / nn.RNN's kernel calls to the stand-in ops, and back afterwards."""
    rnn = importlib.import_module("torch.nn.modules.rnn")
    original = vars(rnn).get("_VF")
    if original is None or isinstance(original, _RecurrentVF):  # absent in this torch, or already swapped
        yield
        return
    rnn._VF = _RecurrentVF(original)
    try:
        yield
    finally:
        rnn._VF = original


# ---------------------------------------------------------------------------------------------
# associative_scan: torch's own higher-order op, which keeps n symbolic and the combine function as a subgraph.


def _scan_module():
    return importlib.import_module("torch._higher_order_ops.associative_scan")


def associative_scan_standin(combine_fn, xs, dim: int, reverse: bool = False, combine_mode: str = "pointwise"):
    """Drop-in for torch._higher_order_ops.associative_scan during capture (combine_mode is not needed: the
    combine function is traced once on element-shaped inputs, whatever it computes)."""
    scan = _scan_module()
    if not callable(combine_fn):
        raise ValueError(f"associative_scan: combine_fn must be callable, got {combine_fn!r}")
    leaves, spec = pytree.tree_flatten(xs)
    if not leaves or not all(isinstance(x, torch.Tensor) for x in leaves):
        raise ValueError("associative_scan: xs must be a non-empty pytree of tensors")
    dim = dim % leaves[0].dim()
    leaves = [torch.movedim(x, dim, 0) for x in leaves]
    if reverse:
        leaves = [torch.flip(x, [0]) for x in leaves]
    flat = functools.partial(scan.wrap_combine_fn_flat, combine_fn=combine_fn, spec=spec, num_leaves=len(leaves))
    out = list(scan.associative_scan_op(flat, leaves, ()))
    if reverse:
        out = [torch.flip(x, [0]) for x in out]
    return pytree.tree_unflatten([torch.movedim(x, 0, dim) for x in out], spec)


def _originals() -> list:
    """(holder module, attribute, original) for each public binding of associative_scan in torch."""
    try:
        mod = _scan_module()
    except ImportError:  # pragma: no cover
        return []
    original = vars(mod)["associative_scan"]
    holders = [mod, sys.modules.get("torch._higher_order_ops")]
    return [(h, "associative_scan", original) for h in holders if h is not None and vars(h).get("associative_scan") is original]


@contextlib.contextmanager
def standins(model: torch.nn.Module, extra_namespaces: tuple = ()):
    """During one capture: associative_scan swapped for the stand-in in torch and in every namespace the model's
    code binds it (its modules' globals, `extra_namespaces`), and the recurrent modules' kernels for the stand-in
    ops. Everything is put back afterwards; nothing outlives the capture."""
    patches = []
    originals = _originals()
    namespaces = {id(ns): ns for ns in extra_namespaces}
    for sub in model.modules():
        mod = sys.modules.get(type(sub).__module__)
        if isinstance(mod, types.ModuleType):
            namespaces[id(vars(mod))] = vars(mod)
    for holder, _, _ in originals:
        namespaces[id(vars(holder))] = vars(holder)
    for _, _, original in originals[:1]:
        for ns in namespaces.values():
            for name, value in list(ns.items()):
                if value is original:
                    patches.append((ns, name, value))
    del namespaces
    try:
        for ns, name, _ in patches:
            ns[name] = associative_scan_standin
        with recurrent_standins():
            yield
    finally:
        for ns, name, value in patches:
            ns[name] = value


def standin_display(target, args) -> tuple[str, str] | None:
    """(op name, module type) to report for a stand-in node: the aten op the user's module calls. The module
    type is left to the node's module stack (""), which names the user's LSTM / GRU / RNN."""
    name = _DISPLAY.get(target)
    return (name, "") if name is not None else None
