"""The seed article's attention: one head written by hand, softmax(Q K^T / sqrt(d)) V, the width d a symbol.

The Q, K and V projections are independent, so one ceil(log2 d) of them is on the critical path; the scores
contract over d, the softmax takes 2 ceil(log2 n) + 3 and the product with V contracts over n.
"""

import torch
from torch import nn
from torch.export import Dim


class Head(nn.Module):
    def __init__(self, d: int = 64):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(d, d, bias=False) for _ in range(3))

    def forward(self, x):
        scores = self.q(x) @ self.k(x).transpose(1, 2) / x.shape[-1] ** 0.5
        return scores.softmax(-1) @ self.v(x)


def model(d: int = 64):
    return Head(d)


def example_inputs(d: int = 64):
    return (torch.randn(2, 16, d),)


dynamic_shapes = {"x": {0: Dim("b"), 1: Dim("n")}}
symbolic = ("d",)
