"""examples/attention.py written by hand: Q K^T, softmax, times V. Same work and depth, different traffic.

The fused SDPA moves O(b*n) bytes with the width fixed; here the n x n scores are written and read back between
the ops, so the bytes, and the I/O against any fast memory, are O(b*n**2) (Dao et al. 2022, Theorem 2).
"""

import torch

from attention import SelfAttention, dynamic_shapes, example_inputs  # noqa: F401 - the same inputs and Dims


class SelfAttentionByHand(SelfAttention):
    def attend(self, q, k, v):
        scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
        return torch.softmax(scores, dim=-1) @ v


model = SelfAttentionByHand
