"""A tiny GPT with a KV cache, written out, for `depthscope analyze examples/decode_gpt.py --generate`.

The generation protocol (docs/model-files.md): `make_cache(batch, length)` builds a cache of `length` past tokens
(per layer a key and a value tensor [batch, heads, length, head_dim]); `decode_step(model, token, cache)` runs one
token against it. The model's own forward is the prefill: it runs the prompt, writes the cache and picks the first
new token. Positions are sinusoidal (Vaswani et al. 2017), computed from the position, so no table bounds n or c.

Expected, with the width fixed: prefill work O(b*n**2), depth O(log(n)); decode step work O(b*c), depth
O(log(c)); T new tokens: work O(b*n**2 + b*n*T + b*T**2), depth O(T*log(n + T)).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

D_MODEL, HEADS, LAYERS, VOCAB = 64, 4, 2, 128


def positions(start, length: int, d: int, device) -> torch.Tensor:
    """Sinusoidal encodings of positions start..start+length-1: [length, d]."""
    pos = torch.arange(length, device=device, dtype=torch.float32) + start
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    angles = pos[:, None] * freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D_MODEL), nn.LayerNorm(D_MODEL)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.proj = nn.Linear(D_MODEL, D_MODEL)
        self.mlp = nn.Sequential(nn.Linear(D_MODEL, 4 * D_MODEL), nn.GELU(), nn.Linear(4 * D_MODEL, D_MODEL))

    def forward(self, x, past=None):
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, n, HEADS, d // HEADS).transpose(1, 2) for t in (q, k, v))
        if past is not None:  # decode: the new token's key and value join the cache, its query sees every key
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=past is None)
        x = x + self.proj(y.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.ln2(x)), (k, v)


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D_MODEL)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, VOCAB, bias=False)

    def run(self, idx, cache, start):
        x = self.tok(idx) + positions(start, idx.shape[1], D_MODEL, idx.device)
        new = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else cache[i])
            new.append(kv)
        logits = self.head(self.ln_f(x[:, -1]))  # the next token's logits only
        return logits.argmax(-1), new

    def forward(self, idx):
        """The prefill: the prompt's tokens, the cache they write, the first new token (greedy)."""
        return self.run(idx, None, 0)


def make_cache(batch: int, length: int):
    """A cache of `length` past tokens: per layer (keys, values), each [batch, heads, length, head_dim]."""
    shape = (batch, HEADS, length, D_MODEL // HEADS)
    return [(torch.zeros(shape), torch.zeros(shape)) for _ in range(LAYERS)]


def decode_step(model, token, cache):
    """One token [batch, 1] after c cached tokens: the next token and the cache grown to c + 1."""
    return model.run(token, cache, cache[0][0].shape[2])


model = TinyLM
example_inputs = (torch.randint(0, VOCAB, (2, 16)),)
dynamic_shapes = {"idx": {0: Dim("b"), 1: Dim("n")}}
