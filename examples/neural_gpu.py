"""The Neural GPU (Kaiser and Sutskever 2015, arXiv 1511.08228): a stack of convolutional GRUs applied to the
whole tape once per input position.

Each step is a fixed number of convolutions over a tape of width n (depth O(1) per step, work O(b*n)); the paper
runs n steps, so work O(b*n**2) and depth O(n). The step loop is a Python loop over n, so depthscope uses the
fitted engine. Width m, tape height and kernel are fixed.
"""

import torch
from torch import nn
from torch.export import Dim


class ConvGRU(nn.Module):
    """CGRU(s) = u * s + (1 - u) * tanh(U * (r * s) + B), with u, r = sigmoid(conv(s))."""

    def __init__(self, m: int, kernel: int = 3):
        super().__init__()
        pad = kernel // 2
        self.update = nn.Conv2d(m, m, kernel, padding=pad)
        self.reset = nn.Conv2d(m, m, kernel, padding=pad)
        self.cand = nn.Conv2d(m, m, kernel, padding=pad)

    def forward(self, s):
        u = torch.sigmoid(self.update(s))
        r = torch.sigmoid(self.reset(s))
        return u * s + (1 - u) * torch.tanh(self.cand(r * s))


class NeuralGPU(nn.Module):
    def __init__(self, vocab: int = 16, m: int = 8, height: int = 4, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, m * height)
        self.gru = nn.ModuleList([ConvGRU(m) for _ in range(layers)])
        self.out = nn.Linear(m, vocab)
        self.m, self.height = m, height

    def forward(self, tokens):
        b, n = tokens.shape
        s = self.embed(tokens).view(b, n, self.m, self.height).permute(0, 2, 3, 1)  # [b, m, height, n]
        for _ in range(n):  # one pass of the whole stack per input position
            for layer in self.gru:
                s = layer(s)
        return self.out(s[:, :, 0, :].transpose(1, 2))  # read the first row of the tape


model = NeuralGPU
example_inputs = (torch.randint(0, 16, (2, 8)),)
dynamic_shapes = {"tokens": {0: Dim("b"), 1: Dim("n", max=64)}}
