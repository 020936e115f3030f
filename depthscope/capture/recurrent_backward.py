"""The backward of the recurrent stand-ins (depthscope::lstm, gru, rnn_tanh, rnn_relu) and its cost rule.

`--train` differentiates through the stand-in ops, so each has an autograd formula (torch.library.register_autograd)
whose backward is one more custom op, `depthscope::lstm_backward` (gru_backward, ...): back-propagation through
time for the whole module, with a fake kernel (shapes only: the gradients are shaped like what they differentiate)
and an eager kernel that recomputes the forward and asks autograd (exact gradients; with dropout between layers the
mask is drawn again, so eager gradients of that case are not the forward's). The op returns the input's gradient
(a 0-element tensor when the input needs none), the initial states' (an empty list when they need none) and the
parameters' (an empty list when none is trained).

Cost (`backward_cost`): the backward of a recurrence is a recurrence too, run back in time. Notation as in
depthscope.cost.rules.recurrent: B rows per step, T steps, I input width, H hidden, P state width (H, or the LSTM
projection), G gates (4 lstm, 3 gru, 1 rnn). For one cell at one step, given the gradients arriving at its output
(from the output or the layer above, and from step t + 1), with the forward's gate values saved:

- the incoming gradients are added (B*P, depth 1); with a projection, d h_raw = dh W_hr (2*B*H*P, 1 + ceil(log2 P));
- the gate math backward, to the gradient of the G*H pre-activations ("dgates"), the chain rule of each forward op
  (a derivative from saved values off the path, one multiply on it):
  lstm: do = dh tanh c; dc = dc' + dh o (1 - tanh^2 c); di, df, dg = dc g, dc c_prev, dc i; the four activation
  derivatives (s (1 - s), 1 - g^2) times their gate; dc_prev = dc f: 22*B*H work, dgates 4 after the sum;
  gru: dn = dh (1 - z); dz = dh (h_prev - n); dh z; da_n = dn (1 - n^2); d gh_n = da_n r; dr = da_n gh_n;
  da_r = dr r (1 - r); da_z = dz z (1 - z); and the add of dh z to the recurrent product below: 16*B*H work,
  dgates 4 after the sum (1 more for that add on the way to the previous step);
  rnn: da = dh (1 - h^2) (tanh: 3*B*H) or dh [a > 0] (relu: 2*B*H), 1 after the sum;
- dh_prev = dgates W_hh and dx = dgates W_ih: contractions over G*H (2*B*P*G*H and 2*B*I*G*H FLOPs, depth
  1 + ceil(log2(G*H))). dh_prev is not needed at the first step unless the initial state needs a gradient, nor dx
  at the first layer unless the input does (that is what autograd computes for torch's own LSTM);
- weight gradients after all steps: dW_ih = sum over T*B rows of dgates^T x, dW_hh likewise with h_prev (and dW_hr
  with the raw h): 2*T*B*G*H*I, 2*T*B*G*H*P (2*T*B*H*P) FLOPs, depth 1 + ceil(log2(T*B)); bias gradients are sums
  over T*B rows (G*H*(T*B - 1) each of b_ih, b_hh, depth ceil(log2(T*B))).

So the matmul FLOPs are twice the forward's (gradients with respect to inputs and to weights), less the products
nothing needs. Depth: a unidirectional stack is a wavefront run backwards, from (top layer, T - 1) to (layer 0,
step 0), like the forward's: a step back in time in layer l costs R_l (gate math plus the W_hh product), a step down
into layer l costs V_l (the W_ih product above, dropout's mask multiply, then layer l's gate math), so the longest
path is A_top + sum V_l + (T - 1) max_l R_l, then the weight gradients. A bidirectional layer's gradient at every
step needs both directions of the layer above to have finished (the reverse direction's BPTT ends at T - 1), so
layers serialise: sum_l (A_l + (T - 1) R_l), plus the two directions' dx added (depth 1) on the way down.
"""

from __future__ import annotations

import sympy
import torch

from depthscope.cost.registry import OpCall, register
from depthscope.cost.rules.matmul import contraction
from depthscope.cost.value import Cost
from depthscope.symbols import ONE, clog2

KINDS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
# gate-math backward per step: (work per B*H besides the sum of incoming gradients, depth from that sum to dgates,
# extra depth on the way to the previous step)
_GATE_MATH = {"lstm": (22, 4, 0), "gru": (16, 4, 1), "rnn_tanh": (3, 1, 0), "rnn_relu": (2, 1, 0)}


def _run_forward(kind: str, input, hx: list, params: list, flags: tuple):
    state = hx if kind == "lstm" else hx[0]
    return list(getattr(torch, kind)(input, state, params, *flags))


# The dispatcher's thread-local key sets outside any kernel: a custom op's kernel runs below autograd (even with
# grad mode on, nothing is recorded), so the eager backward restores these to differentiate its recomputed forward.
_TOP_LEVEL_KEYS = (torch._C._dispatch_tls_local_include_set(), torch._C._dispatch_tls_local_exclude_set())


def _eager_backward(kind, grads, input, hx, params, flags, input_grad, state_grad, weight_grad):
    """Recompute the forward with autograd and differentiate it (eager runs only; export uses the fake kernel)."""
    with torch._C._ForceDispatchKeyGuard(*_TOP_LEVEL_KEYS), torch.enable_grad():
        x = input.detach().requires_grad_(input_grad)
        states = [h.detach().requires_grad_(state_grad) for h in hx]
        weights = [p.detach().requires_grad_(weight_grad) for p in params]
        outs = _run_forward(kind, x, states, weights, flags)
        wrt = ([x] if input_grad else []) + (states if state_grad else []) + (weights if weight_grad else [])
        got = list(torch.autograd.grad(outs, wrt, grads, allow_unused=True)) if wrt else []
    got = [torch.zeros_like(w) if g is None else g for g, w in zip(got, wrt)]
    grad_input = got.pop(0) if input_grad else input.new_empty(0)
    grad_states = [got.pop(0) for _ in hx] if state_grad else []
    return grad_input, grad_states, got


def _define(kind: str):
    def backward_op(grads: list[torch.Tensor], input: torch.Tensor, hx: list[torch.Tensor], params: list[torch.Tensor],
                    has_biases: bool, num_layers: int, dropout: float, train: bool, bidirectional: bool,
                    batch_first: bool, input_grad: bool, state_grad: bool,
                    weight_grad: bool) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        flags = (has_biases, num_layers, dropout, train, bidirectional, batch_first)
        return _eager_backward(kind, grads, input, hx, params, flags, input_grad, state_grad, weight_grad)

    backward_op.__doc__ = f"Back-propagation through time of aten.{kind}.input: gradients of input, states, params."
    op = torch.library.custom_op(f"depthscope::{kind}_backward", backward_op, mutates_args=())

    @op.register_fake
    def _(grads, input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first, input_grad,
          state_grad, weight_grad):
        grad_input = input.new_empty(input.shape) if input_grad else input.new_empty(0)
        return (grad_input, [h.new_empty(h.shape) for h in hx] if state_grad else [],
                [p.new_empty(p.shape) for p in params] if weight_grad else [])

    return op


BACKWARD_OPS = {kind: _define(kind) for kind in KINDS}


def register_backward(forward_ops: dict) -> None:
    """Give each forward stand-in ({kind: custom op}) its autograd formula: the backward op above."""
    for kind, forward in forward_ops.items():
        forward.register_autograd(_backward_of(kind), setup_context=_setup_context)


def _setup_context(ctx, inputs, output):
    input, hx, params, *flags = inputs
    hx = list(hx) if isinstance(hx, (list, tuple)) else [hx]
    needs = ctx.needs_input_grad  # flattened: input, each state, each parameter, then the flags
    ctx.wants = (bool(needs[0]), any(needs[1:1 + len(hx)]), any(needs[1 + len(hx):1 + len(hx) + len(params)]))
    ctx.flags = tuple(flags)
    ctx.shape = (len(hx), len(params))
    ctx.save_for_backward(input, *hx, *params, *output)


def _backward_of(kind: str):
    op = getattr(torch.ops.depthscope, f"{kind}_backward").default

    def backward(ctx, *grads):
        n_hx, n_params = ctx.shape
        saved = ctx.saved_tensors
        input, hx, params, outputs = saved[0], list(saved[1:1 + n_hx]), list(saved[1 + n_hx:1 + n_hx + n_params]), \
            saved[1 + n_hx + n_params:]
        grads = [torch.zeros_like(o) if g is None else g for g, o in zip(grads, outputs)]
        input_grad, state_grad, weight_grad = ctx.wants
        grad_input, grad_states, grad_params = op(grads, input, hx, params, *ctx.flags, input_grad, state_grad,
                                                  weight_grad)
        states = list(grad_states) if state_grad else [None] * n_hx
        return (grad_input if input_grad else None, states if kind == "lstm" else states[0],
                list(grad_params) if weight_grad else [None] * n_params, *([None] * len(ctx.flags)))

    return backward


# ---------------------------------------------------------------------------------------------
# Cost


def _layer_shapes(params: list, layers: int, directions: int) -> list:
    """(input width, hidden, state width, projection?) per layer, from the weights (as the forward rule reads them)."""
    stride = len(params) // (layers * directions)
    has_proj = stride in (3, 5)
    out = []
    for layer in range(layers):
        group = params[layer * directions * stride:][:stride]
        w_ih, w_hh = group[0], group[1]
        proj = group[-1].shape[0] if has_proj else None
        hidden = group[-1].shape[1] if has_proj else w_hh.shape[1]
        out.append((w_ih.shape[1], hidden, proj if proj is not None else hidden, has_proj))
    return out


def backward_cost(kind: str, steps, batch, shapes: list, directions: int, has_biases: bool, dropout: bool,
                  input_grad: bool, state_grad: bool, weight_grad: bool) -> Cost:
    """Back-propagation through time of a stack of recurrences (see the module docstring for the derivation)."""
    gates = _GATES[kind]
    math_work, math_depth, recur_extra = _GATE_MATH[kind]
    rows = steps * batch
    work = flops = sympy.S.Zero
    enter, recur, down = [], [], []
    top = len(shapes) - 1
    for layer, (width, hidden, state, has_proj) in enumerate(shapes):
        g = gates * hidden
        proj = contraction(batch * hidden, state) if has_proj else Cost()
        for _ in range(directions):
            step_work = batch * state + math_work * batch * hidden + proj.work
            hidden_product = contraction(batch * state, g)
            input_product = contraction(batch * width, g)
            work += steps * step_work
            flops += steps * proj.flops
            recurrent_steps = steps if state_grad else steps - 1
            work += recurrent_steps * hidden_product.work
            flops += recurrent_steps * hidden_product.flops
            if layer > 0 or input_grad:
                work += steps * input_product.work
                flops += steps * input_product.flops
            if weight_grad:
                for out_numel in (g * width, g * state) + ((hidden * state,) if has_proj else ()):
                    product = contraction(out_numel, rows)
                    work += product.work
                    flops += product.flops
                if has_biases:
                    work += 2 * g * (rows - 1)
        if directions == 2 and (layer > 0 or input_grad):
            work += rows * width  # the two directions' dx added
        if dropout and layer > 0:
            work += rows * width  # dropout's mask multiply
        a = 1 + proj.depth + math_depth  # incoming sum, projection, gate math: to dgates
        m = 1 + clog2(g)  # dgates times W_hh or W_ih
        enter.append(a)
        recur.append(a + m + recur_extra)
        # into the layer below: dgates W_ih, the two directions' dx added, dropout's mask multiply
        down.append(m + (1 if directions == 2 else 0) + (1 if dropout and layer > 0 else 0))
    tail = []
    if weight_grad:
        tail.append(1 + clog2(rows))
    if input_grad:
        tail.append(down[0])
    if state_grad:
        tail.append(recur[0] - enter[0])
    tail_depth = sympy.Max(*tail) if tail else sympy.S.Zero
    if directions == 2:
        depth = sympy.Add(*[enter[l] + (steps - 1) * recur[l] for l in range(len(shapes))])
        depth += sympy.Add(*[down[l] for l in range(1, len(shapes))])
    else:
        depth = enter[top] + sympy.Add(*[down[l + 1] + enter[l] for l in range(top)]) + (steps - 1) * sympy.Max(*recur)
    return Cost(sympy.expand(work), depth + tail_depth, sympy.expand(flops))


def _kind_of(op) -> str:
    return str(op).split(".")[1].removesuffix("_backward")


@register(*BACKWARD_OPS.values(),
          work="gate-math backward (lstm 22, gru 16, rnn 3/2 per B*H) + incoming sums, per step; dh W_hh, dx W_ih "
               "per step; dW = dgates^T [x, h] over T*B rows; bias sums",
          depth="unidirectional: A_top + sum_l V_l + (T - 1) max_l R_l; bidirectional: sum_l (A_l + (T - 1) R_l) + "
                "descents; then 1 + ceil(log2(T*B)) for the weight gradients; R = A + 1 + ceil(log2(G*H))")
def recurrence_backward(call: OpCall) -> Cost:
    kind = _kind_of(call.op)
    x = call.arg("input")
    params = list(call.arg("params"))
    layers = int(call.arg("num_layers"))
    directions = 2 if call.arg("bidirectional") else 1
    if x.ndim == 2:  # unbatched [T, I]
        steps, batch = x.shape[0], ONE
    elif call.arg("batch_first"):
        steps, batch = x.shape[1], x.shape[0]
    else:
        steps, batch = x.shape[0], x.shape[1]
    dropout = bool(call.arg("train")) and float(call.arg("dropout") or 0.0) > 0 and layers > 1
    return backward_cost(kind, steps, batch, _layer_shapes(params, layers, directions), directions,
                         bool(call.arg("has_biases")), dropout, bool(call.arg("input_grad")),
                         bool(call.arg("state_grad")), bool(call.arg("weight_grad")))
