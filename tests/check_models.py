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

# An O(n**2) custom op without a cost rule: unmodeled ops count one step per output element, so without the
# gate it passes a budget of work b*n and depth 1.
PAIRWISE = '''
import torch
from torch import nn
from torch.export import Dim


@torch.library.custom_op("gatetest::pairwise", mutates_args=())
def pairwise(x: torch.Tensor) -> torch.Tensor:
    return (x.unsqueeze(-1) - x.unsqueeze(-2)).abs().sum(-1)  # every element against every other: O(n**2)


@pairwise.register_fake
def _(x):
    return torch.empty_like(x)


class Pairwise(nn.Module):
    def forward(self, x):
        return pairwise(x)


model = Pairwise
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {"x": {0: Dim("b"), 1: Dim("n")}}
'''

# A model whose architecture comes from a JSON file next to it and whose width comes from an environment
# variable: "sum" reduces over n (depth O(log(n))), "scale" does not (depth O(1)). It also prints, to stdout
# and to fd 1, which must not reach `depthscope check`'s stdout.
CONFIGURED = '''
import json
import os

import torch
from torch import nn
from torch.export import Dim

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "arch.json")) as f:
    ARCH = json.load(f)["arch"]
WIDTH = int(os.environ.get("GATE_WIDTH", "4"))
print("model stdout: hello")
os.write(1, b"model fd 1: hello\\n")


class Configured(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(WIDTH))

    def forward(self, x):
        y = x * self.scale
        return y.sum(1) if ARCH == "sum" else y


model = Configured
example_inputs = (torch.randn(2, 8, WIDTH),)
dynamic_shapes = {"x": {1: Dim("n")}}
'''

# Depth O(1) and O(log(n)) in one op each: the quickest models to analyze.
SCALE = '''
import torch
from torch import nn
from torch.export import Dim


class Scale(nn.Module):
    def forward(self, x):
        return x * 2


model = Scale
example_inputs = (torch.randn(2, 8),)
dynamic_shapes = {"x": {1: Dim("n")}}
'''

SUM = SCALE.replace("return x * 2", "return x.sum(1)")


def hostile(statement: str, where: str = "import") -> str:
    """SCALE with `statement` run at import (before torch is imported) or at the start of forward."""
    if where == "import":
        return statement + "\n" + SCALE
    return SCALE.replace("        return x * 2", f"        {statement}\n        return x * 2")


class Project:
    """A scratch project: model files, a pyproject.toml with check entries, and `depthscope check` run in-process."""

    def __init__(self, root, cache_dir=None):
        self.root = root
        self.cache_dir = cache_dir

    def write(self, entries=(), tool=None, models=None):
        import json

        for name, source in (models or {}).items():
            (self.root / name).write_text(source)
        lines = ["[project]", 'name = "demo"', "", "[tool.depthscope]"]
        settings = {"cache-dir": str(self.cache_dir)} if self.cache_dir else {}
        settings.update(tool or {})
        lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
        for entry in entries:
            lines += ["", "[[tool.depthscope.check]]"] + [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
        (self.root / "pyproject.toml").write_text("\n".join(lines) + "\n")
        return self

    def run(self, *args, capsys):
        import depthscope.cli as cli

        code = cli.main(["check", "--config", str(self.root / "pyproject.toml"), *args])
        out, err = capsys.readouterr()
        return code, out, err

    def cache_entries(self):
        directory = self.cache_dir or (self.root / ".depthscope_cache")
        return sorted(p for p in directory.glob("*.json"))
