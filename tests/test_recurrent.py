"""nn.LSTM / nn.GRU / nn.RNN stay symbolic in the sequence length, and their closed form equals the unrolled cell."""

import pytest
import torch
from torch import nn
from torch.export import Dim

import depthscope
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
        assert got["work"] == int(ref.work)
        assert got["flops"] == int(ref.flops)
        assert got["depth"] == int(ref.depth)


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
    assert report.big_o == {"work": b * n, "depth": n, "parallelism": b}
    assert isinstance(model.rnn, nn.LSTM)  # the stand-in is gone after capture
    assert "rnn" in {m.path for m in report.modules()}
