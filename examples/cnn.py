"""A small image CNN with dynamic batch and image size: work O(b*H*W), depth O(log(H) + log(W)).

Three conv/BatchNorm/ReLU stages, each followed by a 2x2 max pool, then global average pooling and a linear
head. The convolutions and pools have fixed windows, so they only add constant depth; the global average pool
sums (H/8)*(W/8) values per channel with a tree, which is where the log(H) + log(W) depth comes from.

Three 2x2 pools divide H and W by 8, so the Dims start at 16 (the pooled map must stay at least 2x2).
"""

import torch
from torch import nn
from torch.export import Dim


def stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class CNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(stage(3, 16), stage(16, 32), stage(32, 64))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(64, classes)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.head(x.flatten(1))


model = CNN
example_inputs = (torch.randn(2, 3, 64, 64),)
dynamic_shapes = {"x": {0: Dim("b", min=2), 2: Dim("H", min=16, max=4096), 3: Dim("W", min=16, max=4096)}}
