"""nn.LSTM / nn.GRU / nn.RNN stay symbolic in the sequence length, and their closed form equals the unrolled cell.

The recurrence's outputs are the h_t its cells compute: a reference written in Python has to gather them with
torch.stack (and a bidirectional layer's two directions with torch.cat), copies that add no dependency and that
the aten rule (one op, writing each h_t where it belongs) rightly does not count. The comparison takes them out.
"""

import importlib
import warnings

import pytest
import sympy
import torch
from torch import nn
from torch.export import Dim

import depthscope
from depthscope.capture.captured import Captured
from depthscope.capture.naming import user_symbols
from depthscope.cost.registry import lookup
from depthscope.engine.analysis import analyze_captured
from depthscope.symbols import size_symbol

b, n = size_symbol("b"), size_symbol("n")


class UnrolledCell(nn.Module):
    """Reference: the same recurrence as a Python loop, time-major, layers inner (bidirectional: layer-major)."""

    def __init__(self, mode, input_size, hidden, layers, bidirectional=False):
        super().__init__()
        gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[mode]
        dirs = 2 if bidirectional else 1
        widths = [input_size] + [dirs * hidden] * (layers - 1)
        self.ih = nn.ModuleList([nn.Linear(w, gates * hidden) for w in widths for _ in range(dirs)])
        self.hh = nn.ModuleList([nn.Linear(hidden, gates * hidden) for _ in widths for _ in range(dirs)])
        self.mode, self.layers, self.dirs = mode, layers, dirs

    def cell(self, k, x, h, c):
        g_i, g_h = self.ih[k](x), self.hh[k](h)
        if self.mode == "RNN":
            return torch.tanh(g_i + g_h), c
        if self.mode == "GRU":
            i_r, i_z, i_n = g_i.chunk(3, -1)
            h_r, h_z, h_n = g_h.chunk(3, -1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            new = torch.tanh(i_n + r * h_n)
            return (1 - z) * new + z * h, c
        i, f, g, o = (g_i + g_h).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, x, h0, c0):
        steps = x.shape[1]
        h, c = list(h0.unbind(0)), list(c0.unbind(0))
        if self.dirs == 1:
            outs = []
            for t in range(steps):
                inp = x[:, t]
                for layer in range(self.layers):
                    h[layer], c[layer] = self.cell(layer, inp, h[layer], c[layer])
                    inp = h[layer]
                outs.append(inp)
            return torch.stack(outs, 1)
        seq = [x[:, t] for t in range(steps)]
        for layer in range(self.layers):
            fwd, bwd = [None] * steps, [None] * steps
            kf, kb = 2 * layer, 2 * layer + 1
            for t in range(steps):
                h[kf], c[kf] = self.cell(kf, seq[t], h[kf], c[kf])
                fwd[t] = h[kf]
            for t in reversed(range(steps)):
                h[kb], c[kb] = self.cell(kb, seq[t], h[kb], c[kb])
                bwd[t] = h[kb]
            seq = [torch.cat([f, r], -1) for f, r in zip(fwd, bwd)]
        return torch.stack(seq, 1)


class Library(nn.Module):
    def __init__(self, mode, input_size, hidden, layers, bidirectional=False):
        super().__init__()
        cls = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}[mode]
        self.rnn = cls(input_size, hidden, layers, batch_first=True, bidirectional=bidirectional)
        self.mode = mode

    def forward(self, x, h0, c0):
        state = (h0, c0) if self.mode == "LSTM" else h0
        return self.rnn(x, state)[0]


CASES = {
    "lstm-2-layers": ("LSTM", 16, 32, 2, False),
    "gru": ("GRU", 8, 16, 1, False),
    "rnn-3-layers": ("RNN", 8, 16, 3, False),
    "lstm-bidirectional": ("LSTM", 8, 16, 2, True),
    "gru-bidirectional": ("GRU", 8, 16, 1, True),
}


COPIES = ("aten.stack.default", "aten.cat.default")


def without_copies(ref, layers: int, bidirectional: bool) -> dict:
    """The reference's work, FLOPs and depth less its layout copies (stack, cat). Every path from an input to
    the output crosses the same copies (the final stack, and each bidirectional layer's per-step cat), so the
    longest path without them is the critical path less its copies."""
    on_path = [s for s in ref.critical_path().steps if s.op in COPIES]
    assert len(on_path) == 1 + (layers if bidirectional else 0)
    copy_work = sum(int(r.cost.work) for r in ref.nodes if r.op in COPIES)
    return {"work": int(ref.work) - copy_work, "flops": int(ref.flops),
            "depth": int(ref.depth) - sum(int(s.depth) for s in on_path)}


def _inputs(batch, steps, input_size, hidden, layers, bidirectional):
    dirs = 2 if bidirectional else 1
    return (torch.randn(batch, steps, input_size), torch.randn(layers * dirs, batch, hidden),
            torch.randn(layers * dirs, batch, hidden))


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_closed_form_equals_the_unrolled_cell(case):
    mode, input_size, hidden, layers, bidirectional = CASES[case]
    dyn = {"x": {0: Dim("b"), 1: Dim("n")}, "h0": {1: Dim("b")}, "c0": {1: Dim("b")}}
    report = depthscope.analyze(Library(mode, input_size, hidden, layers, bidirectional),
                                _inputs(3, 5, input_size, hidden, layers, bidirectional),
                                dynamic_shapes=dyn, engine="symbolic")
    assert report.engine == "symbolic" and report.unmodeled == ()
    assert report.big_o["depth"] == n and report.big_o["work"] == b * n
    for batch, steps in [(2, 3), (3, 7)]:
        ref = depthscope.analyze(UnrolledCell(mode, input_size, hidden, layers, bidirectional),
                                 _inputs(batch, steps, input_size, hidden, layers, bidirectional))
        got = report.evaluate(b=batch, n=steps)
        want = without_copies(ref, layers, bidirectional)
        assert got["work"] == want["work"]
        assert got["flops"] == want["flops"]
        assert got["depth"] == want["depth"]


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.rnn = nn.LSTM(16, 32, batch_first=True)
        self.head = nn.Linear(32, 5)

    def forward(self, tokens):
        return self.head(self.rnn(self.embed(tokens))[0])


def test_tagger_without_initial_state_and_module_restored():
    model = Tagger()
    report = depthscope.analyze(model, (torch.randint(0, 100, (2, 8)),),
                                dynamic_shapes={"tokens": {0: Dim("b"), 1: Dim("n")}})
    assert report.engine == "symbolic" and report.unmodeled == ()
    assert {k: report.big_o[k] for k in ("work", "depth", "parallelism")} == {"work": b * n, "depth": n, "parallelism": b}
    assert isinstance(model.rnn, nn.LSTM)  # the stand-in is gone after capture
    assert importlib.import_module("torch.nn.modules.rnn")._VF is torch._VF
    assert "rnn" in {m.path for m in report.modules()}
    # shown under the user's names: the aten op the module calls, in the module that calls it
    assert [(r.op, r.module, r.module_type) for r in report.nodes if "lstm" in r.op] == [("aten.lstm.input", "rnn", "LSTM")]


def test_one_cost_model_for_the_stand_in_and_the_aten_op():
    """The stand-in ops are costed by the aten ops' own rule."""
    for name in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        assert lookup(getattr(torch.ops.depthscope, name).default) is lookup(getattr(torch.ops.aten, name).input)


class Wrapped(nn.Module):
    def __init__(self, rnn, initial_state):
        super().__init__()
        self.rnn, self.initial_state = rnn, initial_state

    def forward(self, x, h0, c0):
        if not self.initial_state:
            return self.rnn(x)[0]
        return self.rnn(x, (h0, c0) if isinstance(self.rnn, nn.LSTM) else h0)[0]


STATIC_CASES = {
    "lstm-proj-bidirectional-no-state": (lambda: nn.LSTM(6, 8, 2, proj_size=4, bidirectional=True), False, False),
    "lstm-batch-first-state": (lambda: nn.LSTM(6, 8, batch_first=True), True, False),
    "gru-unbatched-no-state": (lambda: nn.GRU(6, 8, 2), False, True),
    "rnn-relu-no-bias": (lambda: nn.RNN(6, 8, nonlinearity="relu", bias=False, bidirectional=True), True, False),
}


@pytest.mark.parametrize("case", list(STATIC_CASES), ids=list(STATIC_CASES))
def test_stand_in_equals_the_statically_exported_aten_op(case):
    """The symbolic capture (stand-in) at T = 5 costs what a static export of the same module (aten.lstm.input
    and friends, no stand-in) costs, zero initial states included."""
    make, initial_state, unbatched = STATIC_CASES[case]
    rnn = make()
    dirs = 2 if rnn.bidirectional else 1
    width = getattr(rnn, "proj_size", 0) or rnn.hidden_size
    batch = () if unbatched else (3,)
    x = torch.randn(*((3, 5) if rnn.batch_first else (5, *batch)), 6)
    h0 = torch.randn(rnn.num_layers * dirs, *batch, width)
    c0 = torch.randn(rnn.num_layers * dirs, *batch, rnn.hidden_size)
    model = Wrapped(rnn, initial_state).eval()
    steps_dim = 1 if rnn.batch_first else 0
    report = depthscope.analyze(model, (x, h0, c0), dynamic_shapes={"x": {steps_dim: Dim("n")}, "h0": None, "c0": None},
                                engine="symbolic")
    assert report.unmodeled == ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "_flat_weights ... were assigned during export"
        program = torch.export.export(model, (x, h0, c0))
    aten_op = getattr(torch.ops.aten, rnn.mode.lower()).input  # LSTM, GRU, RNN_TANH, RNN_RELU
    assert any(node.target is aten_op for node in program.graph.nodes)
    rename, symbols = user_symbols(program, None)
    static = analyze_captured(Captured(program, program.graph_module, symbols, rename))
    assert report.evaluate(n=5) == static.evaluate()


# --- --train: the stand-ins' backward (depthscope.capture.recurrent_backward) ----------------------------------

TRAIN_CASES = {
    "lstm-2-layers": (lambda: nn.LSTM(6, 8, 2, batch_first=True), False),
    "gru": (lambda: nn.GRU(6, 8, batch_first=True), False),
    "rnn-relu-3-layers": (lambda: nn.RNN(6, 8, 3, nonlinearity="relu", batch_first=True), False),
    "lstm-bidirectional-state": (lambda: nn.LSTM(6, 8, 2, batch_first=True, bidirectional=True), True),
    "lstm-projection": (lambda: nn.LSTM(6, 8, 2, batch_first=True, proj_size=4), False),
    "gru-bidirectional-state": (lambda: nn.GRU(6, 8, batch_first=True, bidirectional=True), True),
    "rnn-tanh-no-bias": (lambda: nn.RNN(6, 8, 2, bias=False, batch_first=True), False),
    "lstm-learned-state": (lambda: nn.LSTM(6, 8, 2, batch_first=True), "learned"),
    "gru-learned-state": (lambda: nn.GRU(6, 8, batch_first=True, bidirectional=True), "learned"),
}


class Head(nn.Module):
    """A recurrence with an embedding before it (so the recurrence's input needs a gradient) and a linear head."""

    def __init__(self, rnn, initial_state):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.rnn, self.initial_state = rnn, initial_state
        width = (2 if rnn.bidirectional else 1) * (getattr(rnn, "proj_size", 0) or rnn.hidden_size)
        self.head = nn.Linear(width, 3)
        if initial_state == "learned":  # initial states that need a gradient
            units = rnn.num_layers * (2 if rnn.bidirectional else 1)
            self.h0 = nn.Parameter(torch.randn(units, 1, width // (2 if rnn.bidirectional else 1)))
            self.c0 = nn.Parameter(torch.randn(units, 1, rnn.hidden_size)) if isinstance(rnn, nn.LSTM) else None

    def forward(self, tokens, h0, c0):
        x = self.embed(tokens)
        if self.initial_state == "learned":
            h0 = self.h0.expand(-1, x.shape[0], -1)
            c0 = self.c0.expand(-1, x.shape[0], -1) if self.c0 is not None else c0
        if self.initial_state:
            out = self.rnn(x, (h0, c0) if isinstance(self.rnn, nn.LSTM) else h0)[0]
        else:
            out = self.rnn(x)[0]
        return self.head(out)


def _train_inputs(rnn, batch, steps):
    dirs = 2 if rnn.bidirectional else 1
    width = getattr(rnn, "proj_size", 0) or rnn.hidden_size
    return (torch.randint(0, 20, (batch, steps)), torch.randn(rnn.num_layers * dirs, batch, width),
            torch.randn(rnn.num_layers * dirs, batch, rnn.hidden_size))


def _torch_training_flops(model, inputs) -> int:
    """flop_counter over a real forward and backward of torch's own module (oneDNN off: its fused RNN kernel
    is not counted), the sum of the outputs as the loss, as --train differentiates."""
    from torch.utils.flop_counter import FlopCounterMode

    model.zero_grad()
    with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        model(*inputs).sum().backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("case", list(TRAIN_CASES), ids=list(TRAIN_CASES))
def test_training_step_flops_equal_torchs_backward(case):
    make, initial_state = TRAIN_CASES[case]
    torch.manual_seed(0)
    model = Head(make(), initial_state)
    dyn = {"tokens": {0: Dim("b"), 1: Dim("n")}, "h0": {1: Dim("b")}, "c0": {1: Dim("b")}}
    forward = depthscope.analyze(model, _train_inputs(model.rnn, 2, 5), dynamic_shapes=dyn)
    train = depthscope.analyze(model, _train_inputs(model.rnn, 2, 5), dynamic_shapes=dyn, train=True)
    assert train.engine == "symbolic" and train.mode == "train" and train.unmodeled == ()
    assert sum(1 for r in train.nodes if r.op.startswith("backward of aten.")) == 1
    assert train.big_o["depth"] == n + sympy.log(b) and train.big_o["work"] == b * n
    for batch, steps in [(2, 5), (3, 7), (4, 2)]:
        got = train.evaluate(b=batch, n=steps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert got["flops"] == _torch_training_flops(model, _train_inputs(model.rnn, batch, steps)), (batch, steps)
        # the backward runs back through time: at least one more level per step than the forward alone
        assert got["depth"] >= forward.evaluate(b=batch, n=steps)["depth"] + steps
        assert got["work"] >= 2 * forward.evaluate(b=batch, n=steps)["work"]


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_backward_op_gradients_equal_torchs(kind):
    """The stand-in's autograd formula (and the backward op's eager kernel) give torch's own gradients."""
    torch.manual_seed(0)
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}.get(kind, nn.RNN)
    extra = {"nonlinearity": kind.split("_")[1]} if cls is nn.RNN else {}
    rnn = cls(5, 6, 2, bidirectional=True, **extra)
    x = torch.randn(4, 2, 5, requires_grad=True)
    h0 = torch.randn(4, 2, 6, requires_grad=True)
    c0 = torch.randn(4, 2, 6, requires_grad=True)
    params = list(rnn._flat_weights)
    hx = [h0, c0] if kind == "lstm" else h0
    flags = (True, 2, 0.0, True, True, False)
    wrt = [x, h0] + ([c0] if kind == "lstm" else []) + params
    expected = getattr(torch, kind)(x, hx, params, *flags)
    got = getattr(torch.ops.depthscope, kind)(x, hx, params, *flags)
    seeds = [torch.randn_like(o) for o in expected]
    for want, have in zip(torch.autograd.grad(expected, wrt, seeds), torch.autograd.grad(got, wrt, seeds)):
        assert torch.allclose(want, have, atol=1e-6)


def test_lstm_example_trains(capsys):
    import depthscope.cli as cli
    from conftest import example

    assert cli.main(["analyze", example("lstm.py"), "--train", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"mode": "train"' in out and '"unmodeled": []' in out
