"""The seed article's sum row: the sum of a vector of n (work n, depth ceil(log2 n): a fan-in-2 tree)."""

import torch
from torch import nn
from torch.export import Dim


class Sum(nn.Module):
    def forward(self, x):
        return x.sum()


model = Sum
example_inputs = (torch.randn(16),)
dynamic_shapes = {"x": {0: Dim("n")}}
