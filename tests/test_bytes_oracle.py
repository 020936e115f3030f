"""Unfused bytes against an independent count: the exported program run at concrete sizes under a TorchDispatchMode.

The oracle (written here, sharing nothing with depthscope's traffic code) runs `ep.module()` node by node and, for
each graph node, sums the bytes of the tensors the ATen ops it dispatches read and write, from the real tensors:
elements spanned (a stride-0 dim once) times `element_size()`. An op whose every output shares storage with an
input, and whose name does not end in "_", is a view and moves nothing; an op returning no tensor (an assertion
on metadata) moves nothing; an in-place op reads its inputs and writes the mutated tensor once; `empty*` writes
nothing. Conventions where eager and the graph differ, and how the oracle follows the graph:

- a graph op that eager runs as other kernels is counted as one op reading its inputs and writing its outputs:
  `layer_norm` runs `native_layer_norm`, which also writes the mean and rstd nothing reads; `max_pool2d` runs
  `max_pool2d_with_indices`, which also writes int64 indices; SDPA with a boolean mask first turns it into a float
  mask (`where`), and its CPU kernel also writes the logsumexp; `linear` on a strided input copies it, then runs
  `mm` and a separate bias `add`; `diff` runs `narrow`s and `sub`; `dropout` outside training runs nothing;
- a gather (`embedding`, `index`) reads the indices and the elements it gathers, not its whole source table.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.export import Dim
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import depthscope
from depthscope.capture.captured import capture
from depthscope.capture.dims import resized_spec
from depthscope.model_file import ModelSpec
from depthscope.pipeline import load_subject

from conftest import example, import_transformers

GATHERS = {"aten::embedding": 0, "aten::index": 0}  # the op's source argument


def spanned_bytes(t: torch.Tensor) -> int:
    n = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            n *= size
    return n * t.element_size()


def unique_tensors(values) -> list:
    out, seen = [], set()
    for t in tree_leaves(values):
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


NOT_READ_FIRST = {"empty_like", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "randint_like",
                  "new_empty", "new_empty_strided", "new_zeros", "new_ones", "new_full", "fill", "zero", "fill_",
                  "zero_", "copy_", "copy"}


def moved(name: str, inputs: list, outputs: list) -> int | None:
    """Bytes one op moves by the conventions above (None for a view)."""
    storages = {t.untyped_storage().data_ptr() for t in inputs}
    if not outputs:
        return 0
    if not name.endswith("_") and all(t.untyped_storage().data_ptr() in storages for t in outputs):
        return None
    if name.split("::")[1].startswith(("empty", "new_empty")):
        outputs = []
    base = name.split("::")[1]
    if base in NOT_READ_FIRST and inputs:
        inputs = inputs[1:]  # zeros_like(x), x.new_full(...): x's shape only; fill_/zero_/copy_(x, src) overwrite x
    read = sum(spanned_bytes(t) for t in inputs)
    if name in GATHERS:
        source = inputs[GATHERS[name]]
        read += outputs[0].numel() * source.element_size() - spanned_bytes(source)
    return read + sum(spanned_bytes(t) for t in outputs)


class Kernels(TorchDispatchMode):
    """Records (op name, bytes) for every ATen op that is not a view."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        got = moved(func._schema.name, unique_tensors((args, kwargs)), outputs)
        if got is not None:
            self.calls.append((func._schema.name, got))
        return out


class Counter(torch.fx.Interpreter):
    """Runs a graph node by node; each node's bytes are its one kernel's, or the node's own for a composite."""

    total = 0

    def run_node(self, n):
        if n.op != "call_function":
            return super().run_node(n)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        with Kernels() as kernels:
            result = super().run_node(n)
        name = getattr(getattr(n.target, "_schema", None), "name", None)
        if len(kernels.calls) == 1 and kernels.calls[0][0] == name:
            self.total += kernels.calls[0][1]
        elif kernels.calls or name is not None:
            outputs = [t for t in tree_leaves(result) if isinstance(t, torch.Tensor)]
            self.total += moved(name or "composite", unique_tensors((args, kwargs)), outputs) or 0
        return result


def oracle_bytes(program, args) -> int:
    counter = Counter(program.module())
    with torch.no_grad():
        counter.run(*args)
    return counter.total


# -- the models -----------------------------------------------------------------------------------


class ViewsAndInPlace(nn.Module):
    """Views, in-place ops on activations and on a buffer, a write through a view, factories, dtype casts."""

    def __init__(self):
        super().__init__()
        self.register_buffer("steps", torch.zeros(16))
        self.lin = nn.Linear(16, 16)

    def forward(self, x):
        y = self.lin(x)
        y.relu_()
        y.mul_(2.0)
        z = y.transpose(0, 1).contiguous()
        z[0].fill_(1.0)
        self.steps.add_(1)
        w = y.unsqueeze(0).expand(3, -1, -1).sum(0)
        e = torch.empty_like(w)
        e.copy_(w)
        mask = w > 0
        return z.t() + e.to(torch.bfloat16).float() + torch.zeros_like(w) + torch.arange(w.shape[-1]) * mask


def tiny_gpt2():
    transformers = import_transformers()
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64, use_cache=False,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def bd(n_max=None):
    return {0: Dim("b", min=2), 1: Dim("n", min=2, max=n_max)}


MODULES = {  # name -> (model factory, example inputs, dynamic shapes, sizes to count at)
    "layer_norm": (lambda: nn.LayerNorm(24), (torch.randn(2, 5, 24),), (bd(),), {"b": 3, "n": 7}),
    "embedding": (lambda: nn.Embedding(1000, 16), (torch.randint(0, 1000, (2, 5)),), (bd(),), {"b": 3, "n": 7}),
    "views_inplace": (ViewsAndInPlace, (torch.randn(4, 16),), ({0: Dim("b", min=2)},), {"b": 7}),
    "bf16_linear": (lambda: nn.Linear(8, 8).to(torch.bfloat16), (torch.randn(3, 8, dtype=torch.bfloat16),),
                    ({0: Dim("b", min=2)},), {"b": 5}),
    "gpt2_hf": (tiny_gpt2, (torch.randint(0, 100, (2, 16)),), (bd(64),), {"b": 3, "n": 13}),
}
FILES = {"mlp": ({"b": 9}), "cnn": {"b": 3, "H": 37, "W": 45}, "attention": {"b": 3, "n": 19},
         "lstm": {"b": 3, "n": 11}, "gpt": {"b": 3, "n": 19}}


def concrete(example_inputs, dynamic, sizes):
    out = []
    for t, spec in zip(example_inputs, dynamic):
        shape = list(t.shape)
        for d, dim in spec.items():
            shape[d] = sizes[dim.__name__]
        out.append(torch.randn(shape, dtype=t.dtype) if t.is_floating_point() else torch.randint(0, 50, shape))
    return out


@pytest.fixture(scope="module", params=sorted(MODULES) + sorted(FILES))
def counted(request):
    """(depthscope's bytes at the sizes, the oracle's count there)."""
    name = request.param
    if name in MODULES:
        build, inputs, dynamic, sizes = MODULES[name]
        model = build()
        spec = ModelSpec(model, inputs, {}, dynamic, name=name)
        args = concrete(inputs, dynamic, sizes)
        report = depthscope.analyze(model, inputs, dynamic_shapes=dynamic)
    else:
        sizes = FILES[name]
        subject = load_subject(example(f"{name}.py"))
        spec = subject.spec
        args = list(resized_spec(spec, sizes).example_inputs)
        report = depthscope.analyze_file(example(f"{name}.py"))
    torch.manual_seed(0)
    return report, sizes, oracle_bytes(capture(spec).program, args)


def test_unfused_bytes_equal_the_dispatch_count(counted):
    report, sizes, truth = counted
    assert report.evaluate(**sizes)["bytes"] == truth


def test_fused_bytes_never_exceed_unfused(counted):
    report, sizes, _ = counted
    values = report.evaluate(**sizes)
    assert 0 < values["bytes_fused"] <= values["bytes"]
