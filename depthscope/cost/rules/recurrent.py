"""Recurrent cells and whole recurrences (LSTM, GRU, Elman RNN): inherently sequential over time.

One step of a cell computes its gates as two contractions in parallel (input x W_ih^T over I, hidden h W_hh^T over
H; each 2 * B * gates * K FLOPs, depth 1 + ceil(log2 K)), adds them with the biases, then runs the elementwise gate
math. A sequence op (aten.lstm.input, ...) runs T steps, T the sequence length of its input (symbolic under the
capture's stand-in ops): work is T * step work summed over layers and directions (the two directions run in
parallel). Depth follows the DAG: a step along time waits only for h W_hh^T (x W_ih^T is computed ahead), a
unidirectional stack is a wavefront, layer l+1 takes step t as soon as layer l has produced it, so the critical
path is T - 1 recurrent steps of the slowest layer plus one entry into each layer (T + L - 1 steps for equal
layers); a bidirectional layer's output at t needs the reverse pass from T back to t, so each layer waits for the
whole previous one: T steps per layer.

The op's outputs are the h_t (and c_t) its cells compute, each written where the output needs it: no stack of the
output sequence and no concat of a bidirectional layer's two directions is charged. Those are copies of one
implementation (ATen's CPU kernel and torch's decomposition make them, cuDNN writes its output buffer directly)
and no value depends on them. When nn.LSTM / nn.GRU / nn.RNN get no initial state they create zeros before the
op: graph nodes of their own.

This is the one cost model of recurrent modules: during capture nn.LSTM / nn.GRU / nn.RNN call stand-in ops with
the same schema (depthscope.capture.standins), registered with this same rule.
"""

from __future__ import annotations

import sympy
from torch import ops

from depthscope.cost.value import Cost
from depthscope.symbols import ONE, clog2
from depthscope.cost.rules.matmul import contraction
from depthscope.cost.registry import OpCall, TensorMeta, register

aten = ops.aten

# gates per hidden unit
_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _sum_terms(out_numel, terms: int) -> Cost:
    """Add `terms` tensors elementwise with a tree: (terms - 1) * out work, depth ceil(log2 terms)."""
    return Cost((terms - 1) * out_numel, clog2(terms))


def cell_cost(kind: str, batch, in_size, hidden, biases: bool, proj=None, ready: str = "both") -> Cost:
    """One step of one cell over `batch` rows.

    lstm: gates [B, 4H] = x W_ih^T + h W_hh^T (+ b_ih + b_hh) (a sum tree of 2 or 4 terms); i, f, o = sigmoid,
          g = tanh (4BH, depth 1); c' = f c + i g (3BH, depth 2); h' = o tanh(c') (2BH, depth 2)
          [; h' W_hr^T with a projection].
    gru:  gi = x W_ih^T (+ b_ih), gh = h W_hh^T (+ b_hh), in parallel; r, z = sigmoid(gi + gh) (4BH, depth 2);
          n = tanh(gi_n + r gh_n) (3BH, depth 3); h' = (1 - z) n + z h (4BH, depth 2 after n).
    rnn:  act(x W_ih^T + h W_hh^T (+ b_ih + b_hh)) (a sum tree, then BH at depth 1).

    `ready` says which operand arrives last: "both" (depth counts both contractions), "input" (the hidden
    contraction was done earlier: only x W_ih^T is on the path) or "hidden" (only h W_hh^T is).
    """
    h_in = proj if proj is not None else hidden  # the recurrent state's width (LSTM projection)
    gates = batch * _GATES[kind] * hidden
    bh = batch * hidden
    x_part = contraction(gates, in_size)
    h_part = contraction(gates, h_in)
    if ready == "input":
        h_part = Cost(h_part.work, 0, h_part.flops)
    elif ready == "hidden":
        x_part = Cost(x_part.work, 0, x_part.flops)
    if kind == "gru":
        if biases:
            x_part = x_part + Cost(gates, 1)
            h_part = h_part + Cost(gates, 1)
        return (x_part | h_part) + Cost(4 * bh, 2) + Cost(3 * bh, 3) + Cost(4 * bh, 2)
    pre = (x_part | h_part) + _sum_terms(gates, 4 if biases else 2)
    if kind == "rnn":
        return pre + Cost(bh, 1)
    step = pre + Cost(4 * bh, 1) + Cost(3 * bh, 2) + Cost(2 * bh, 2)
    if proj is not None:
        step = step + contraction(batch * proj, hidden)
    return step


def _kind(op) -> str:
    name = str(op).split(".")[1]
    if name.startswith("lstm"):
        return "lstm"
    if name.startswith("gru"):
        return "gru"
    return "rnn"


@register(aten.lstm_cell, aten.gru_cell, aten.rnn_tanh_cell, aten.rnn_relu_cell,
          work="2*B*G*H*(I + H) (gate contractions, G = 4 lstm, 3 gru, 1 rnn) + biases + gate math "
               "(lstm 9BH, gru 11BH, rnn BH)",
          depth="1 + ceil(log2 max(I, H)) + bias adds + gate math (lstm 5, gru 7 (+1 bias), rnn 1)")
def cell(call: OpCall) -> Cost:
    x, w_ih, w_hh = call.args[0], call.args[2], call.args[3]
    batch = x.shape[0] if x.ndim == 2 else ONE
    kind = _kind(call.op)
    hidden = w_hh.shape[1]
    biases = isinstance(call.arg("b_ih"), TensorMeta)
    return cell_cost(kind, batch, w_ih.shape[1], hidden, biases)


def sequence_cost(kind: str, steps, rows_per_step, params: list, has_biases: bool, layers: int, directions: int,
                  dropout: bool) -> Cost:
    """A stack of `layers` recurrences over `steps` time steps.

    Depth follows the DAG of cells: a cell's input projection x W_ih^T does not wait for the previous step, so
    moving along time costs D_l (the cell with only h W_hh^T on the path) and entering layer l from below costs V_l
    (only x W_ih^T on the path; + 2 for dropout between layers). Unidirectional (a wavefront):
    max(V_0, D_0) + sum_{l>0} V_l + (T - 1) * max_l D_l. Bidirectional: a layer's every output needs the whole
    reverse pass, so layers serialise: sum_l (max(V_l, D_l) + (T - 1) D_l).
    """
    units = layers * directions
    stride = len(params) // units
    has_proj = stride in (3, 5)
    work = sympy.S.Zero
    flops = sympy.S.Zero
    enter, recur = [], []
    for layer in range(layers):
        v_l, d_l = [], []
        for direction in range(directions):
            group = params[(layer * directions + direction) * stride:][:stride]
            w_ih, w_hh = group[0], group[1]
            proj = group[-1].shape[0] if has_proj else None
            hidden = w_hh.shape[1] if not has_proj else group[-1].shape[1]
            args = (kind, rows_per_step, w_ih.shape[1], hidden, has_biases, proj)
            step = cell_cost(*args)
            work += steps * step.work
            flops += steps * step.flops
            v_l.append(cell_cost(*args, ready="input").depth)
            d_l.append(cell_cost(*args, ready="hidden").depth)
        v, d = sympy.Max(*v_l), sympy.Max(*d_l)
        if dropout and layer > 0:
            # dropout on the previous layer's output (mask draw, multiply) before this layer's input projection
            width = params[(layer * directions) * stride].shape[1]
            work += 2 * steps * rows_per_step * width
            v = v + 2
        enter.append(v)
        recur.append(d)
    if directions == 2:
        depth = sympy.Add(*[sympy.Max(v, d) + (steps - 1) * d for v, d in zip(enter, recur)])
    else:
        depth = sympy.Max(enter[0], recur[0]) + sympy.Add(*enter[1:]) + (steps - 1) * sympy.Max(*recur)
    return Cost(work, depth, flops)


@register(aten.lstm, aten.gru, aten.rnn_tanh, aten.rnn_relu,
          work="T * step work * layers * directions (step as the cell, rows B; packed .data: tokens rows)",
          depth="unidirectional: max(V_0, D_0) + sum_{l>0} V_l + (T - 1) * max_l D_l; bidirectional: sum_l "
                "(max(V_l, D_l) + (T - 1) D_l); D = 1 + ceil(log2 H) + bias adds + gate math, V: ceil(log2 I)")
def recurrence(call: OpCall) -> Cost:
    kind = _kind(call.op)
    packed = str(call.op).endswith(".data")
    x = call.args[0]
    if packed:
        batch_sizes = call.args[1]
        steps = batch_sizes.shape[0]
        params = list(call.arg("params"))
        rows_total = x.shape[0]
        rows_per_step = ONE
    else:
        params = list(call.arg("params"))
        batch_first = bool(call.arg("batch_first", False))
        if x.ndim == 2:  # unbatched [T, I]
            steps, batch = x.shape[0], ONE
        else:
            steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
        rows_per_step = batch
    layers = int(call.arg("num_layers"))
    directions = 2 if call.arg("bidirectional", False) else 1
    dropout = bool(call.arg("train", False)) and float(call.arg("dropout", 0.0) or 0.0) > 0 and layers > 1
    cost = sequence_cost(kind, steps, rows_per_step, params, bool(call.arg("has_biases", True)), layers,
                         directions, dropout)
    if packed:
        # work scales with the real tokens, not T * max batch: rows_per_step was 1, so rescale by tokens / T
        scale = sympy.cancel(rows_total / steps)
        cost = Cost(sympy.expand(cost.work * scale), cost.depth, sympy.expand(cost.flops * scale))
    return cost
