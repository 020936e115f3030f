"""An Elman RNN written as a Python loop over the sequence: h_t = tanh(W x_t + U h_(t-1)).

torch.export cannot keep n symbolic through a Python loop, so `depthscope analyze` falls back to the fitted
engine: exact counts at a sweep of sizes, fitted and checked on held-out sizes. Work O(b*n), depth O(n).
"""

import torch
from torch import nn
from torch.export import Dim


class ElmanLoop(nn.Module):
    def __init__(self, d_in: int = 32, hidden: int = 64):
        super().__init__()
        self.inp = nn.Linear(d_in, hidden)
        self.rec = nn.Linear(hidden, hidden, bias=False)
        self.hidden = hidden

    def forward(self, x):
        h = x.new_zeros(x.shape[0], self.hidden)
        outs = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.inp(x[:, t]) + self.rec(h))
            outs.append(h)
        return torch.stack(outs, 1)


model = ElmanLoop
example_inputs = (torch.randn(2, 8, 32),)
dynamic_shapes = {"x": {0: Dim("b"), 1: Dim("n", max=128)}}
