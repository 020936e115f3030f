"""An MLP over (b, features) with the feature width fixed: work O(b), depth O(1).

Each row goes through the same fixed-size layers independently, so the batch only widens the DAG: the depth
is a constant (three contractions over fixed widths plus the activations).
"""

import torch
from torch import nn
from torch.export import Dim

model = nn.Sequential(
    nn.Linear(32, 128),
    nn.ReLU(),
    nn.Linear(128, 128),
    nn.GELU(),
    nn.LayerNorm(128),
    nn.Linear(128, 10),
)
example_inputs = (torch.randn(4, 32),)
dynamic_shapes = ({0: Dim("b", min=2)},)
