"""The seed article's elementwise row: z = x * y over two vectors of n (work n, depth 1)."""

import torch
from torch import nn
from torch.export import Dim


class Multiply(nn.Module):
    def forward(self, x, y):
        return x * y


model = Multiply
example_inputs = (torch.randn(16), torch.randn(16))
N = Dim("n")
dynamic_shapes = {"x": {0: N}, "y": {0: N}}
