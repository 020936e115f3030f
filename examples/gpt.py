"""A small GPT decoder: work O(b*n**2), depth O(log(n)) with the width and the layer count fixed.

Token embedding plus a learned position table, two pre-LN blocks (causal F.scaled_dot_product_attention, GELU
MLP), a final LayerNorm and the language-model head. Attention makes the work quadratic in n; every step on the
critical path is a tree over at most n or d values, so the depth grows like L * (c1 * ceil(log2 n) + c2).

The position table has `max_len` rows, so n's Dim is bounded by it (max=1024): a longer sequence has no positions.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

MAX_LEN = 1024


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int = 256, d_model: int = 64, heads: int = 4, layers: int = 2, max_len: int = MAX_LEN):
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, idx):
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


model = GPT
example_inputs = (torch.randint(0, 256, (2, 16)),)
dynamic_shapes = {"idx": {0: Dim("b", min=2), 1: Dim("n", min=2, max=MAX_LEN)}}
