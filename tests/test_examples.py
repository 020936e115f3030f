"""End to end on every model file in examples/: big-O classes, nothing unmodeled, exact evaluation, critical path."""

from __future__ import annotations

import pathlib

import pytest
import sympy
import torch
from torch.export import Dim

import depthscope
from depthscope.symbols import evaluate, size_symbol

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
FILES = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))

b, n, H, W = (size_symbol(s) for s in ("b", "n", "H", "W"))

# The expected (work, depth) big-O classes of each example, as its module docstring states them.
EXPECTED = {
    "attention": (b * n**2, sympy.log(n)),
    "attention_by_hand": (b * n**2, sympy.log(n)),
    "gpt": (b * n**2, sympy.log(n)),
    "cnn": (b * H * W, sympy.log(H) + sympy.log(W)),
    "dilated_cnn": (b * n, sympy.S.One),
    "mlp": (b, sympy.S.One),
    "lstm": (b * n, n),
    "loop_rnn": (b * n, n),
    "linear_attention": (b * n, sympy.log(n)),
    "neural_gpu": (b * n**2, n),
    "hf_models": (b * n**2, sympy.log(n)),  # GPT-2 small on the meta device by default
    "decode_gpt": (b * n**2, sympy.log(n)),  # its forward is the prefill; --generate: tests/test_generate_cli.py
}
# Examples torch.export cannot keep symbolic: the auto engine falls back to the fitted engine.
FITTED = {"loop_rnn", "neural_gpu"}

_reports: dict = {}


def report(path: pathlib.Path):
    """Analyze each file once per session (export dominates the test time)."""
    if path not in _reports:
        _reports[path] = depthscope.analyze_file(str(path))
    return _reports[path]


def sizes_for(r, preferred: int = 64) -> dict[str, int]:
    """A size for every symbol, inside its range."""
    out = {}
    for name, info in r.symbols.items():
        v = max(preferred, info.min)
        out[name] = min(v, info.max) if info.max is not None else v
    return out


def test_examples_found():
    assert FILES, f"no model files in {EXAMPLES}"


def test_every_example_has_expectations():
    missing = [p.name for p in FILES if p.stem not in EXPECTED]
    assert not missing, f"add the expected big-O classes of {missing} to EXPECTED in {__file__}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_big_o(path):
    if path.stem not in EXPECTED:
        pytest.skip(f"no expectation for {path.name} (see test_every_example_has_expectations)")
    r = report(path)
    work, depth = EXPECTED[path.stem]
    assert r.big_o["work"] == work, f"work {r.work}"
    assert r.big_o["depth"] == depth, f"depth {r.depth}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_nothing_unmodeled(path):
    assert report(path).unmodeled == ()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_engine(path):
    r = report(path)
    assert r.engine == ("fitted" if path.stem in FITTED else "symbolic")
    if r.engine == "fitted":
        assert r.fit.heldout_passed


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("preferred", [64, 100])
def test_example_evaluates_to_positive_integers(path, preferred):
    r = report(path)
    at = sizes_for(r, preferred)
    values = r.evaluate(**at)
    for key in ("work", "depth"):
        assert isinstance(values[key], int) and values[key] > 0, (key, values[key], at)
    symbols = {size_symbol(k): v for k, v in at.items()}
    assert values["work"] == evaluate(r.work, symbols)
    assert values["depth"] == evaluate(r.depth, symbols)
    assert values["work"] >= values["depth"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_critical_path_sums_to_depth(path):
    r = report(path)
    assert r.critical_path().steps, "empty critical path"
    # the path is the longest at the sizes asked for: its steps add up to the depth there (a fitted report's path
    # is that of the size its breakdowns were taken at)
    points = [r.breakdown_at] if r.engine == "fitted" else [sizes_for(r, p) for p in (2**16, 64, 5)]
    for sizes in points:
        at = {size_symbol(k): v for k, v in sizes.items()}
        steps = r.critical_path(sizes).steps
        total = sum(int(evaluate(step.depth, at)) for step in steps)
        assert total == evaluate(r.depth, at), [(s.op, s.depth) for s in steps]


class GlobalAveragePool(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


def test_global_average_pool_depth_is_log_h_plus_log_w():
    r = depthscope.analyze(
        GlobalAveragePool(),
        (torch.randn(2, 8, 32, 32),),
        dynamic_shapes={"x": {0: Dim("b", min=2), 2: Dim("H", min=2), 3: Dim("W", min=2)}},
    )
    assert r.unmodeled == ()
    assert r.big_o["depth"] == sympy.log(H) + sympy.log(W)
    assert r.big_o["work"] == b * H * W
    # one tree over H*W values, then the divide: ceil(log2(H*W)) + 1
    assert r.evaluate(b=2, H=32, W=32)["depth"] == 10 + 1
    assert r.evaluate(b=2, H=33, W=31)["depth"] == 10 + 1  # ceil(log2 1023) = 10
    assert r.evaluate(b=2, H=33, W=32)["depth"] == 11 + 1
