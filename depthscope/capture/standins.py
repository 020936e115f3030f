"""Stand-ins used during capture for constructs torch.export cannot keep symbolic.

nn.LSTM / nn.GRU / nn.RNN: the kernels of aten.lstm.input (gru, rnn_tanh, rnn_relu) unbind the sequence, so export
specialises its length. During capture the modules' own forward runs unchanged but its calls to `_VF.lstm` ... go
to `depthscope::lstm` ...: custom ops with the aten overloads' schema, a fake kernel that computes the output shapes
and an eager kernel that calls the aten op. Their cost rule is the aten rule, registered for both.

`associative_scan` with combine_mode="generic" (the only mode on CPU) unrolls its tree at trace time and guards
on the scanned length, so export rejects a dynamic n. During capture depthscope swaps it for one opaque custom op
that keeps n symbolic; the op's cost rule traces the user's combine function once on element-shaped inputs and
charges a work-efficient scan: 2(n - 1) combines in 2 ceil(log2 n) levels (Blelloch, CMU-CS-90-190).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
import types

import sympy
import torch
import torch.utils._pytree as pytree

from depthscope.cost.value import Cost
from depthscope.cost.registry import OpCall, register
from depthscope.cost.rules.recurrent import recurrence
from depthscope.symbols import clog2

_COMBINES: dict[int, tuple] = {}


@torch.library.custom_op("depthscope::associative_scan", mutates_args=())
def _associative_scan_op(xs: list[torch.Tensor], dim: int, reverse: bool, key: int) -> list[torch.Tensor]:
    """Eager reference: an inclusive scan applying the combine function left to right."""
    combine, spec = _COMBINES[key]
    n = xs[0].shape[dim]
    order = range(n - 1, -1, -1) if reverse else range(n)
    acc = None
    outs: list = [[] for _ in xs]
    for i in order:
        elem = [x.select(dim, i) for x in xs]
        acc = elem if acc is None else pytree.tree_leaves(
            combine(pytree.tree_unflatten(acc, spec), pytree.tree_unflatten(elem, spec)))
        for slot, value in zip(outs, acc):
            slot.append(value)
    if reverse:
        outs = [slot[::-1] for slot in outs]
    return [torch.stack(slot, dim) for slot in outs]


@_associative_scan_op.register_fake
def _(xs, dim, reverse, key):
    return [torch.empty_like(x) for x in xs]


def associative_scan_standin(combine_fn, xs, dim: int, reverse: bool = False, combine_mode: str = "pointwise"):
    """Drop-in for torch._higher_order_ops.associative_scan during capture."""
    leaves, spec = pytree.tree_flatten(xs)
    key = id(combine_fn)
    _COMBINES[key] = (combine_fn, spec)
    dim = dim % leaves[0].dim()
    outs = torch.ops.depthscope.associative_scan(leaves, dim, reverse, key)
    return pytree.tree_unflatten(list(outs), spec)


def _originals() -> list:
    """(holder module, attribute, original) for each public binding of associative_scan in torch."""
    try:
        mod = importlib.import_module("torch._higher_order_ops.associative_scan")
    except ImportError:  # pragma: no cover
        return []
    mod = sys.modules["torch._higher_order_ops.associative_scan"]
    original = vars(mod)["associative_scan"]
    holders = [mod, sys.modules.get("torch._higher_order_ops")]
    return [(h, "associative_scan", original) for h in holders if h is not None and vars(h).get("associative_scan") is original]


@contextlib.contextmanager
def standins(model: torch.nn.Module, extra_namespaces: tuple = ()):
    """Swap associative_scan for the stand-in in torch and in every namespace the model's code binds it."""
    patches = []
    originals = _originals()
    namespaces = {id(ns): ns for ns in extra_namespaces}
    for sub in model.modules():
        mod = sys.modules.get(type(sub).__module__)
        if isinstance(mod, types.ModuleType):
            namespaces[id(vars(mod))] = vars(mod)
    for holder, attr, original in originals:
        namespaces[id(vars(holder))] = vars(holder)
    for _, _, original in originals[:1]:
        for ns in namespaces.values():
            for name, value in list(ns.items()):
                if value is original:
                    patches.append((ns, name, value))
    try:
        for ns, name, _ in patches:
            ns[name] = associative_scan_standin
        with recurrent_standins():
            yield
    finally:
        for ns, name, value in patches:
            ns[name] = value


# ---------------------------------------------------------------------------------------------
# The rule: cost the combine function on element-shaped inputs, then scale.

_PROBE_SIZES = (101, 103, 107, 109, 113, 127, 131, 137)


class _Combine(torch.nn.Module):
    def __init__(self, fn, spec, count):
        super().__init__()
        self.fn, self.spec, self.count = fn, spec, count

    def forward(self, *leaves):
        a = pytree.tree_unflatten(list(leaves[: self.count]), self.spec)
        b = pytree.tree_unflatten(list(leaves[self.count :]), self.spec)
        return tuple(pytree.tree_leaves(self.fn(a, b)))


@functools.lru_cache(maxsize=64)
def _combine_cost(key: int, element_shapes: tuple, dtypes: tuple) -> Cost:
    """Work and depth of one combine on element shapes (sympy), exported with a Dim per symbolic size."""
    from depthscope.pipeline import analyze

    fn, spec = _COMBINES[key]
    dims: dict = {}
    examples, dyn = [], []
    for shape, dtype in zip(element_shapes, dtypes):
        concrete, spec_dims = [], {}
        for i, size in enumerate(shape):
            if size.is_Integer:
                concrete.append(int(size))
                continue
            if size not in dims:
                name = f"_e{len(dims)}"
                dims[size] = (torch.export.Dim(name, min=2), _PROBE_SIZES[len(dims) % len(_PROBE_SIZES)], name)
            dim, hint, _ = dims[size]
            concrete.append(hint)
            spec_dims[i] = dim
        examples.append(torch.zeros(concrete, dtype=dtype or torch.float32))
        dyn.append(spec_dims or None)
    count = len(examples)
    inputs = tuple(examples) + tuple(torch.zeros_like(e) for e in examples)
    report = analyze(_Combine(fn, spec, count), inputs, dynamic_shapes={"leaves": tuple(dyn) * 2}, name="combine")
    back = {sympy.Symbol(name, integer=True, positive=True): size for size, (_, _, name) in dims.items()}
    return Cost(report.work.xreplace(back), report.depth.xreplace(back), report.flops.xreplace(back))


@register(torch.ops.depthscope.associative_scan, work="2*(n - 1) * combine work",
          depth="2*ceil(log2 n) * combine depth")
def associative_scan(call: OpCall) -> Cost:
    """Work-efficient scan over n: up-sweep and down-sweep trees of the combine function."""
    xs, dim, key = call.args[0], call.args[1], call.args[3]
    n = xs[0].shape[dim]
    element_shapes = tuple(tuple(x.shape[:dim] + x.shape[dim + 1 :]) for x in xs)
    combine = _combine_cost(key, element_shapes, tuple(x.dtype for x in xs))
    return Cost(sympy.expand(2 * (n - 1) * combine.work), sympy.expand(2 * clog2(n) * combine.depth),
                sympy.expand(2 * (n - 1) * combine.flops))


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


for _op in (gru_standin, rnn_tanh_standin, rnn_relu_standin):
    _op.register_fake(_fake_single_state)

# One cost model: the stand-ins are costed by the very rule of the aten ops they stand for.
register(lstm_standin, gru_standin, rnn_tanh_standin, rnn_relu_standin)(recurrence)

# stand-in op -> the aten overload reports show (what the user's module calls)
_DISPLAY = {
    torch.ops.depthscope.lstm.default: "aten.lstm.input",
    torch.ops.depthscope.gru.default: "aten.gru.input",
    torch.ops.depthscope.rnn_tanh.default: "aten.rnn_tanh.input",
    torch.ops.depthscope.rnn_relu.default: "aten.rnn_relu.input",
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


def standin_display(target, args) -> tuple[str, str] | None:
    """(op name, module type) to report for a stand-in node: what the user wrote, not depthscope's op. For the
    recurrent ops the module type is left to the node's module stack (""), which names the user's module."""
    name = _DISPLAY.get(target)
    if name is not None:
        return name, ""
    if target is torch.ops.depthscope.associative_scan.default:
        return "higher_order.associative_scan", ""
    return None
