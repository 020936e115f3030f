"""Stand-ins used during capture for constructs torch.export cannot keep symbolic.

`associative_scan` with combine_mode="generic" (the only mode on CPU) unrolls its tree at trace time and guards
on the scanned length, so export rejects a dynamic n. During capture depthscope swaps it for one opaque custom op
that keeps n symbolic; the op's cost rule traces the user's combine function once on element-shaped inputs and
charges a work-efficient scan: 2(n - 1) combines in 2 ceil(log2 n) levels (Blelloch, CMU-CS-90-190).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types

import sympy
import torch
import torch.utils._pytree as pytree

from depthscope.cost.value import Cost
from depthscope.cost.registry import OpCall, register
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
    import importlib

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
        with recurrent_standins(model):
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
# Recurrent modules. nn.LSTM / nn.GRU / nn.RNN specialise the sequence length under export, so during capture
# each is replaced by a module calling one opaque op whose rule is the unrolled recurrence in closed form.

_RECURRENT: dict[int, torch.nn.Module] = {}


@torch.library.custom_op("depthscope::recurrent", mutates_args=())
def _recurrent_op(x: torch.Tensor, h0: torch.Tensor | None, c0: torch.Tensor | None, key: int) -> list[torch.Tensor]:
    """Eager reference: run the original module."""
    module = _RECURRENT[key]
    hx = None if h0 is None else ((h0, c0) if isinstance(module, torch.nn.LSTM) else h0)
    out, state = module(x, hx)
    if isinstance(module, torch.nn.LSTM):
        return [out, state[0], state[1]]
    return [out, state, state.new_empty(0)]


@_recurrent_op.register_fake
def _(x, h0, c0, key):
    module = _RECURRENT[key]
    batched = x.dim() == 3
    dirs = 2 if module.bidirectional else 1
    proj = getattr(module, "proj_size", 0) or 0
    h_out = proj or module.hidden_size
    if batched:
        b, t = (x.shape[0], x.shape[1]) if module.batch_first else (x.shape[1], x.shape[0])
        out_shape = (b, t, dirs * h_out) if module.batch_first else (t, b, dirs * h_out)
        state = (module.num_layers * dirs, b)
    else:
        out_shape = (x.shape[0], dirs * h_out)
        state = (module.num_layers * dirs,)
    c = x.new_empty(state + (module.hidden_size,)) if isinstance(module, torch.nn.LSTM) else x.new_empty(0)
    return [x.new_empty(out_shape), x.new_empty(state + (h_out,)), c]


class _RecurrentStandIn(torch.nn.Module):
    """Calls depthscope::recurrent in place of an nn.LSTM / nn.GRU / nn.RNN (sequence length stays symbolic)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.original = module
        self.key = id(module)
        _RECURRENT[self.key] = module

    def forward(self, x, hx=None):
        if not isinstance(x, torch.Tensor):
            raise TypeError("depthscope analyzes recurrent modules on padded tensors, not PackedSequence")
        is_lstm = isinstance(self.original, torch.nn.LSTM)
        h0, c0 = (hx if hx is not None else (None, None)) if is_lstm else (hx, None)
        out, h, c = torch.ops.depthscope.recurrent(x, h0, c0, self.key)
        return (out, (h, c)) if is_lstm else (out, h)


@contextlib.contextmanager
def recurrent_standins(model: torch.nn.Module):
    """Swap every nn.LSTM / nn.GRU / nn.RNN inside the model for a stand-in, and back afterwards."""
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN)):
                setattr(parent, name, _RecurrentStandIn(child))
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def recurrent_cost(mode: str, batch, steps, input_size, hidden, proj: int, layers: int, bidirectional: bool,
                   bias: bool, initial_state: bool) -> Cost:
    """The unrolled recurrence, time-major (every layer of step t before step t + 1).

    Per cell: x W_ih^T and h W_hh^T (2 FLOPs per multiply-add, bias adds) and the gate arithmetic
    (LSTM 13 H, GRU 11 H, RNN 2 H elementwise ops per row). Along the recurrence one step costs
    D = 1 + ceil(log2 R) (+1 bias) + gate chain (LSTM 6: add, sigmoid, f*c, + i*g, tanh, o*; GRU 7; RNN 2),
    R = the recurrent width (proj_size or hidden), and a projection adds 1 + ceil(log2 H). A cell entered from the
    layer below costs V_l, the same with ceil(log2 I_l) for the input width I_l; the very first cell also waits for
    its initial state through W_hh (D, plus 1 when the zero state is created), so it costs max(V_0, D (+1)).
    Unidirectional stacks pipeline (wavefront): depth = max(V_0, D) + sum_{l>0} V_l + (T - 1) D + 1 (the output
    stack). A bidirectional layer needs both directions of the layer below at every step, so layers serialise:
    depth = sum_l (first cell + (T - 1) D + 1 (concat)) + 1.
    """
    gates = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}[mode]
    chain = {"LSTM": 6, "GRU": 7, "RNN_TANH": 2, "RNN_RELU": 2}[mode]
    cell_elementwise = {"LSTM": 13, "GRU": 11, "RNN_TANH": 2, "RNN_RELU": 2}[mode]
    dirs = 2 if bidirectional else 1
    rec = proj or hidden
    out_width = proj or hidden
    b1 = 1 if bias else 0
    step = 1 + clog2(rec) + b1 + chain + ((1 + clog2(hidden)) if proj else 0)
    work = sympy.S.Zero
    flops = sympy.S.Zero
    depth = sympy.S.Zero
    zero_state = 0 if initial_state else 1
    for layer in range(layers):
        width = input_size if layer == 0 else dirs * out_width
        enter = step - clog2(rec) + clog2(width)
        if layer == 0:
            enter = sympy.Max(enter, step + zero_state)
        cell_flops = 2 * batch * gates * hidden * (width + rec) + (2 * batch * proj * hidden if proj else 0)
        cell_work = cell_flops + 2 * b1 * batch * gates * hidden + cell_elementwise * batch * hidden
        work += dirs * steps * cell_work
        flops += dirs * steps * cell_flops
        if bidirectional:
            work += steps * batch * dirs * out_width  # per-step concat of the two directions
            depth += enter + (steps - 1) * step + 1
        else:
            depth += enter
    if not bidirectional:
        depth += (steps - 1) * step
    work += steps * batch * dirs * out_width  # the output sequence
    depth += 1
    if not initial_state:
        states = 2 if mode == "LSTM" else 1
        work += states * layers * dirs * batch * out_width
    return Cost(sympy.expand(work), sympy.expand(depth), sympy.expand(flops))


@register(torch.ops.depthscope.recurrent, work="T * layers * directions * (gate matmuls + gate arithmetic)",
          depth="sum over layers of the cell entered from below + (T - 1) * recurrent step (bidirectional: per layer)")
def recurrent(call: OpCall) -> Cost:
    x, h0, key = call.args[0], call.args[1], call.args[3]
    module = _RECURRENT[key]
    if x.ndim == 3:
        batch, steps = (x.shape[0], x.shape[1]) if module.batch_first else (x.shape[1], x.shape[0])
    else:
        batch, steps = sympy.S.One, x.shape[0]
    mode = module.mode  # "LSTM", "GRU", "RNN_TANH" or "RNN_RELU"
    return recurrent_cost(mode, batch, steps, x.shape[-1], module.hidden_size, getattr(module, "proj_size", 0) or 0,
                          module.num_layers, module.bidirectional, module.bias, h0 is not None)


def standin_display(target, args) -> tuple[str, str] | None:
    """(op name, module type) to report for a stand-in node: what the user wrote, not depthscope's op."""
    if target is torch.ops.depthscope.recurrent.default:
        module = _RECURRENT.get(args[3])
        if module is not None:
            return f"aten.{module.mode.lower()}.input", type(module).__name__
    if target is torch.ops.depthscope.associative_scan.default:
        return "higher_order.associative_scan", ""
    return None
