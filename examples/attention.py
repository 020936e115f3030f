"""Multi-head self-attention, the seed article's case: work O(b*n**2), depth O(log(n)) with the width fixed.

The Q, K and V projections are independent branches, so they add one log(d) to the critical path, not three.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim


class SelfAttention(nn.Module):
    def __init__(self, d_model: int = 64, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        b, n, d = x.shape
        h = self.heads

        def split(t):
            return t.view(b, n, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        y = self.attend(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, n, d))

    def attend(self, q, k, v):
        """softmax(Q K^T / sqrt(d)) V as one fused op (examples/attention_by_hand.py writes it out)."""
        return F.scaled_dot_product_attention(q, k, v)


model = SelfAttention
example_inputs = (torch.randn(2, 16, 64),)
dynamic_shapes = {"x": {0: Dim("b", min=2), 1: Dim("n", min=2)}}
