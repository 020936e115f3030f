"""Causal linear attention (Katharopoulos et al. 2020) written as a prefix sum.

The same job as a recurrent state update S_t = S_(t-1) + phi(k_t) v_t^T, but computed with cumsum, a
work-efficient parallel scan: work O(b*n), depth O(log(n)) instead of the loop's O(n).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim


class LinearAttention(nn.Module):
    def __init__(self, d: int = 32):
        super().__init__()
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)

    def forward(self, x):
        q, k, v = F.elu(self.q(x)) + 1, F.elu(self.k(x)) + 1, self.v(x)
        # running state S_t = sum_{s<=t} k_s v_s^T and normaliser z_t = sum_{s<=t} k_s, as prefix sums over n
        state = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=1)  # [b, n, d, d]
        norm = torch.cumsum(k, dim=1)  # [b, n, d]
        num = torch.einsum("bnd,bnde->bne", q, state)
        den = torch.einsum("bnd,bnd->bn", q, norm).unsqueeze(-1)
        return num / den


model = LinearAttention
example_inputs = (torch.randn(2, 16, 32),)
dynamic_shapes = {"x": {0: Dim("b"), 1: Dim("n")}}
