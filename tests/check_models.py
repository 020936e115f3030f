"""Tiny model files shared by the `depthscope check` and pre-commit tests (small so each analysis is quick)."""

ATTENTION = '''
import torch
from torch import nn
from torch.export import Dim


class Block(nn.Module):
    def __init__(self, d=WIDTH):
        super().__init__()
        self.encoder = nn.MultiheadAttention(d, 2, batch_first=True)

    def forward(self, x):
        return self.encoder(x, x, x, need_weights=False)[0]


model = Block
example_inputs = (torch.randn(2, 16, WIDTH),)
dynamic_shapes = {"x": {1: Dim("n", min=2, max=64)}}
'''

# The same block with the attention swapped for an Elman RNN written as a Python loop: torch.export cannot keep
# n symbolic through the loop, so depthscope falls back to the fitted engine. Depth O(n).
LOOP_RNN = '''
import torch
from torch import nn
from torch.export import Dim


class Cell(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.rec = nn.Linear(d, d)

    def forward(self, x):
        h = x[:, 0]
        for t in range(x.shape[1]):
            h = torch.tanh(self.rec(h) + x[:, t])
        return h


class Block(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.encoder = Cell(d)

    def forward(self, x):
        return self.encoder(x)


model = Block
example_inputs = (torch.randn(2, 16, 8),)
dynamic_shapes = {"x": {1: Dim("n", min=2, max=32)}}
'''

MLP = '''
import torch
from torch import nn
from torch.export import Dim

from helpers import WIDTH


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, WIDTH)
        self.fc2 = nn.Linear(WIDTH, 8)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


model = MLP
example_inputs = (torch.randn(4, 8),)
dynamic_shapes = {"x": {0: Dim("b")}}
'''

HELPERS = "WIDTH = 16\n"


def attention(width: int = 8) -> str:
    return ATTENTION.replace("WIDTH", str(width))


RNN_DEPTH_MESSAGE = "depth O(n) exceeds budget O(log(n)); critical path through encoder.rec (aten.linear)"
