"""An independent oracle: torch.utils.flop_counter on real forward passes versus depthscope's symbolic FLOPs.

FlopCounterMode counts the matmul family, convolutions and attention (2 per multiply-add) and nothing else, as
depthscope's `flops` does. A model is exported once with dynamic dims; its symbolic `report.flops`, evaluated
at three sizes, must equal the counter's total on real inputs of those sizes exactly. Models are bias-free
(flop_counter ignores bias adds; depthscope counts them as work, not FLOPs) and small so the suite is fast.
Dynamic dims use Dim(min=2), with example sizes >= 2 and distinct from every static dim so that export does
not specialise them.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import depthscope
from depthscope.cost.rules import OpCall, TensorMeta, lookup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_ATTENTION = os.path.join(ROOT, "examples", "attention.py")


def counted_flops(model: nn.Module, inputs: tuple, context=nullcontext) -> int:
    model.eval()
    with torch.no_grad(), context(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops()


def math_sdpa():
    """The CPU fused SDPA kernel counts 0 FLOPs; the math path runs (and counts) the two batched products."""
    return sdpa_kernel(SDPBackend.MATH)


# ---------------------------------------------------------------------------------------------
# Models


class MLP(nn.Module):
    def __init__(self, d=16, hidden=48):
        super().__init__()
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class HandAttention(nn.Module):
    """Multi-head self-attention written with matmul and softmax (no fused SDPA)."""

    def __init__(self, d=16, heads=2):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)

    def forward(self, x):
        b, n, d = x.shape
        h = self.heads

        def split(t):
            return t.view(b, n, h, d // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h)
        y = torch.softmax(scores, dim=-1) @ v
        return self.o(y.transpose(1, 2).reshape(b, n, d))


class CNN(nn.Module):
    """Grouped, strided conv2d over dynamic H and W, then global average pooling and a linear head."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(4, 8, 3, stride=2, padding=2, groups=2, bias=False)  # output >= 2 at H = 2
        self.c2 = nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 10, bias=False)

    def forward(self, x):
        y = self.c2(F.relu(self.c1(x)))
        return self.head(self.pool(y).flatten(1))


class EinsumModel(nn.Module):
    def __init__(self, d=16, e=12, f=6):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(d, e))
        self.w2 = nn.Parameter(torch.randn(e, f))

    def forward(self, x):
        y = torch.einsum("bnd,de->bne", x, self.w1)          # projection
        s = torch.einsum("bne,bme->bnm", y, y)               # batch letter b, contract e
        z = torch.einsum("bnm,bme->bne", s.softmax(-1), y)   # contract the dynamic n
        return torch.einsum("bne,ef->bf", z, self.w2)        # n only in z: summed first, then contract e


class BmmModel(nn.Module):
    def __init__(self, d=16, e=8):
        super().__init__()
        self.shift = nn.Parameter(torch.randn(d))
        self.w = nn.Parameter(torch.randn(d, e))

    def forward(self, x):
        s = torch.bmm(x, x.transpose(1, 2))          # [b, n, n]
        y = torch.baddbmm(self.shift, s, x)          # [b, n, d]; the add is not a FLOP
        return torch.matmul(y, self.w)               # [b, n, e] through a broadcast matmul


class Conv1dModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(3, 8, 5, padding=2, bias=False)
        self.c2 = nn.Conv1d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False)

    def forward(self, x):
        return self.c2(F.gelu(self.c1(x)))


class TransposedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, bias=False)
        self.up1d = nn.ConvTranspose1d(6, 5, 4, stride=2, bias=False)

    def forward(self, x):
        y = self.up(x)                      # [b, 6, 2H, 2W]
        return self.up1d(y.flatten(2))      # over the flattened 4*H*W positions


def _load_example():
    spec = importlib.util.spec_from_file_location("depthscope_oracle_example_attention", EXAMPLE_ATTENTION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Cases: how to build the model, export it, and make inputs at each size.


@dataclass
class Case:
    make: Callable[[], nn.Module]
    example: tuple
    dynamic_shapes: dict | None
    inputs: Callable[..., tuple]
    sizes: list = field(default_factory=list)
    context: Callable = nullcontext
    from_file: str | None = None


def _bn():
    return {"x": {0: Dim("b", min=2), 1: Dim("n", min=2)}}


BN_SIZES = [{"b": 2, "n": 8}, {"b": 3, "n": 32}, {"b": 2, "n": 100}]
HW_SIZES = [{"H": 8, "W": 9}, {"H": 32, "W": 17}, {"H": 100, "W": 33}]
N_SIZES = [{"n": 8}, {"n": 32}, {"n": 100}]

CASES = {
    "mlp": Case(MLP, (torch.randn(3, 7, 16),), _bn(),
                lambda b, n: (torch.randn(b, n, 16),), BN_SIZES),
    "hand-attention": Case(HandAttention, (torch.randn(3, 7, 16),), _bn(),
                           lambda b, n: (torch.randn(b, n, 16),), BN_SIZES),
    "example-attention-sdpa": Case(lambda: _load_example().model(), None, None,
                                   lambda b, n: (torch.randn(b, n, 64),), BN_SIZES,
                                   context=math_sdpa, from_file=EXAMPLE_ATTENTION),
    "cnn-groups-stride-HW": Case(CNN, (torch.randn(2, 4, 11, 13),),
                                 {"x": {2: Dim("H", min=2), 3: Dim("W", min=2)}},
                                 lambda H, W: (torch.randn(2, 4, H, W),), HW_SIZES),
    "einsum": Case(EinsumModel, (torch.randn(3, 7, 16),), _bn(),
                   lambda b, n: (torch.randn(b, n, 16),), BN_SIZES),
    "bmm-baddbmm-matmul": Case(BmmModel, (torch.randn(3, 7, 16),), _bn(),
                               lambda b, n: (torch.randn(b, n, 16),), BN_SIZES),
    "conv1d-length": Case(Conv1dModel, (torch.randn(2, 3, 11),), {"x": {2: Dim("n", min=2)}},
                          lambda n: (torch.randn(2, 3, n),), N_SIZES),
    "conv-transpose-HW": Case(TransposedConv, (torch.randn(2, 4, 11, 13),),
                              {"x": {2: Dim("H", min=2), 3: Dim("W", min=2)}},
                              lambda H, W: (torch.randn(2, 4, H, W),), HW_SIZES),
}


# Hugging Face GPT-2 and BERT (tiny configs, SDPA attention): the real forward under the math SDPA backend counts
# every projection (addmm/mm) and both attention products (bmm) exactly as the symbolic report's FLOPs.
HF_VOCAB = 100


def tiny_gpt2():
    import transformers

    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=HF_VOCAB, n_positions=128,
                                  use_cache=False, bos_token_id=0, eos_token_id=0, attn_implementation="sdpa")
    return transformers.GPT2LMHeadModel(cfg).eval()


def tiny_bert():
    import transformers

    cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=256,
                                  vocab_size=HF_VOCAB, max_position_embeddings=128, attn_implementation="sdpa")
    return transformers.BertModel(cfg).eval()


def _ids_spec():
    return {"input_ids": {0: Dim("b", min=2), 1: Dim("n", min=2, max=128)}}


def _ids(b, n):
    return (torch.randint(0, HF_VOCAB, (b, n)),)


if importlib.util.find_spec("transformers") is not None:
    CASES["hf-gpt2"] = Case(tiny_gpt2, _ids(2, 16), _ids_spec(), _ids, BN_SIZES, context=math_sdpa)
    CASES["hf-bert"] = Case(tiny_bert, _ids(2, 16), _ids_spec(), _ids, BN_SIZES, context=math_sdpa)


@functools.lru_cache(maxsize=None)
def analyzed(name: str):
    """(report, model) for a case, exported once per session."""
    c = CASES[name]
    torch.manual_seed(0)
    if c.from_file:
        report = depthscope.analyze_file(c.from_file)
    else:
        report = depthscope.analyze(c.make(), c.example, dynamic_shapes=c.dynamic_shapes, name=name)
    return report, c.make()


PARAMS = [pytest.param(name, i, id=f"{name}-{'-'.join(f'{k}{v}' for k, v in s.items())}")
          for name, c in CASES.items() for i, s in enumerate(c.sizes)]


@pytest.mark.parametrize("name, i", PARAMS)
def test_flops_equal_flop_counter(name, i):
    c = CASES[name]
    sizes = c.sizes[i]
    report, model = analyzed(name)
    assert set(report.symbols) == set(sizes), report.symbols
    torch.manual_seed(i)
    expected = counted_flops(model, c.inputs(**sizes), c.context)
    assert expected > 0
    got = report.evaluate(**sizes)["flops"]
    assert got == expected, f"{name} at {sizes}: depthscope {got} ({report.flops}) vs flop_counter {expected}"


@pytest.mark.parametrize("name", list(CASES))
def test_every_op_modeled(name):
    report, _ = analyzed(name)
    assert report.unmodeled == ()


def test_example_attention_fused_cpu_kernel_counts_zero():
    """Why the oracle forces the math backend: on CPU the fused kernel counts 0, hiding the b*n^2 products."""
    report, model = analyzed("example-attention-sdpa")
    x = torch.randn(2, 32, 64)
    attention = 2 * 2 * (2 * 4 * 32 * 32 * 16)  # QK^T and PV: b*h*n*n outputs over head dim 16, 2 per MAC
    assert counted_flops(model, (x,), math_sdpa) == report.evaluate(b=2, n=32)["flops"]
    assert counted_flops(model, (x,)) == report.evaluate(b=2, n=32)["flops"] - attention


# ---------------------------------------------------------------------------------------------
# einsum equations straight against flop_counter (no export): torch sums letters only one operand has first.

EINSUM_EQUATIONS = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk->k", [(3, 4), (4, 5)]),
    ("ij,kj->", [(3, 4), (5, 4)]),
    ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 6)]),
    ("ij,jk,kl->", [(3, 4), (4, 5), (5, 6)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,jk->...ik", [(2, 7, 3, 4), (4, 5)]),
    ("bhnd,bhmd->bhnm", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("bnd,de->be", [(2, 7, 4), (4, 5)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("ij->i", [(3, 4)]),
    ("ii->", [(3, 3)]),
]


@pytest.mark.parametrize("equation, shapes", [pytest.param(e, s, id=e) for e, s in EINSUM_EQUATIONS])
def test_einsum_rule_flops_equal_flop_counter(equation, shapes):
    tensors = [torch.randn(*s) for s in shapes]
    with FlopCounterMode(display=False) as counter:
        out = torch.einsum(equation, *tensors)
    metas = [TensorMeta(tuple(sympy.Integer(v) for v in s)) for s in shapes]
    call = OpCall(torch.ops.aten.einsum.default, (equation, metas), {}, (TensorMeta(tuple(out.shape)),))
    assert lookup(call.op)(call).flops == counter.get_total_flops()
