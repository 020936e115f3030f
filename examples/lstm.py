"""An LSTM tagger: embeddings, a 2-layer LSTM, a per-token classifier.

The recurrence runs one step after another: work O(b*n), depth O(n), and the engine stays symbolic (depthscope
stands nn.LSTM in during capture, so the sequence length is not specialised).
"""

import torch
from torch import nn
from torch.export import Dim


class Tagger(nn.Module):
    def __init__(self, vocab: int = 1000, d: int = 64, tags: int = 12):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.rnn = nn.LSTM(d, d, num_layers=2, batch_first=True)
        self.head = nn.Linear(d, tags)

    def forward(self, tokens):
        hidden, _ = self.rnn(self.embed(tokens))
        return self.head(hidden)


model = Tagger
example_inputs = (torch.randint(0, 1000, (2, 16)),)
dynamic_shapes = {"tokens": {0: Dim("b"), 1: Dim("n")}}
