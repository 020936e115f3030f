"""A WaveNet-like stack of dilated 1-D convolutions over length n: work O(b*n), depth O(1) in n.

Four gated residual layers with dilations 1, 2, 4, 8 (kernel 2, causal left padding) and 1x1 output convs.
Every output position depends on a fixed receptive field (16 samples), and there is no global pooling, so n
only widens the DAG: the depth is a constant and the work is linear in b*n.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim


class GatedLayer(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.pad = dilation  # (kernel - 1) * dilation, all on the left: causal
        self.filter = nn.Conv1d(channels, channels, kernel_size=2, dilation=dilation)
        self.gate = nn.Conv1d(channels, channels, kernel_size=2, dilation=dilation)
        self.out = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x):
        h = F.pad(x, (self.pad, 0))
        h = torch.tanh(self.filter(h)) * torch.sigmoid(self.gate(h))
        return x + self.out(h)


class DilatedCNN(nn.Module):
    def __init__(self, in_channels: int = 1, channels: int = 32, out_channels: int = 8, dilations=(1, 2, 4, 8)):
        super().__init__()
        self.inp = nn.Conv1d(in_channels, channels, kernel_size=1)
        self.layers = nn.ModuleList(GatedLayer(channels, d) for d in dilations)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(channels, channels, 1), nn.ReLU(), nn.Conv1d(channels, out_channels, 1))

    def forward(self, x):
        x = self.inp(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


model = DilatedCNN
example_inputs = (torch.randn(2, 1, 64),)
dynamic_shapes = {"x": {0: Dim("b", min=2), 2: Dim("n", min=2)}}
