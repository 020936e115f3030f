"""The seed article's matmul row: an n x n matrix times an n x n matrix (work 2 n^3, depth 1 + ceil(log2 n))."""

import torch
from torch import nn
from torch.export import Dim


class MatMul(nn.Module):
    def forward(self, a, b):
        return a @ b


model = MatMul
example_inputs = (torch.randn(16, 16), torch.randn(16, 16))
N = Dim("n")
dynamic_shapes = {"a": {0: N, 1: N}, "b": {0: N, 1: N}}
