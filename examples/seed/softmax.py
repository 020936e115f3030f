"""The seed article's softmax row: softmax over a vector of n (max tree, subtract, exp, sum tree, divide)."""

import torch
from torch import nn
from torch.export import Dim


class Softmax(nn.Module):
    def forward(self, x):
        return x.softmax(-1)


model = Softmax
example_inputs = (torch.randn(16),)
dynamic_shapes = {"x": {0: Dim("n")}}
