"""Sizes below a Dim's min (batch 1): a concrete capture at that size, against static exports and flop_counter.

torch.export specialises sizes 0 and 1, so every Dim's range starts at 2 or more. The oracles here never go
through the pipeline's fixing of Dims: a plain static `depthscope.analyze` of the model at exactly those input
shapes (no dynamic_shapes), and torch.utils.flop_counter on a real forward (the matmul family and convolution).
"""

import importlib.util
import json
import warnings

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import depthscope
import depthscope.cli as cli
from conftest import example
from depthscope.pipeline import analysis_at, analyze_subject, load_subject


def _example_module(name: str):
    """An example file as a plain module, for oracle models built outside the pipeline."""
    spec = importlib.util.spec_from_file_location(f"below_min_{name}", example(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cnn, gpt, mlp = (_example_module(name) for name in ("cnn", "gpt", "mlp"))

METRICS = ("work", "depth", "flops")


def static_counts(model, inputs) -> dict:
    """work, depth, FLOPs of a static export at exactly these shapes (the engine, no Dims to fix)."""
    values = depthscope.analyze(model, inputs).evaluate()
    return {m: values[m] for m in METRICS}


def counted_flops(model, inputs) -> int:
    """flop_counter on a real forward (SDPA on its math path, which flop_counter counts on CPU)."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.eval()(*inputs)
    return counter.get_total_flops()


def run(capsys, argv):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def gpt_analysis():
    subject = load_subject(example("gpt.py"))
    return subject, analyze_subject(subject)


def test_gpt_at_batch_1_equals_a_static_export_and_flop_counter(gpt_analysis):
    subject, analysis = gpt_analysis
    concrete, note = analysis_at(subject, analysis, {"b": 1, "n": 7})
    assert note == "b=1 is below b's export range [2, inf]; evaluated by a concrete capture at b=1 (exact)"
    assert dict(concrete.provenance.concrete_at) == {"b": 1} and concrete.exactness == "exact"
    assert set(concrete.symbols) == {"b", "n"} and (concrete.symbols["b"].min, concrete.symbols["b"].max) == (1, 1)
    assert "b" not in {str(s) for s in concrete.work.free_symbols}  # formulas in n alone: b is static
    idx = torch.randint(0, 256, (1, 7))
    model = gpt.GPT()
    got = concrete.evaluate(b=1, n=7)
    assert {m: got[m] for m in METRICS} == static_counts(model, (idx,))
    assert got["flops"] == counted_flops(model, (idx,))
    assert got["concrete_at"] == {"b": 1}
    # one capture per (model, fixed sizes) in a process: n=9 reuses it; the critical path adds up there
    again, _ = analysis_at(subject, analysis, {"b": 1, "n": 9})
    assert again is concrete
    assert concrete.value(concrete.critical_path({"b": 1, "n": 9}).depth, {"b": 1, "n": 9}) == \
        concrete.evaluate(b=1, n=9)["depth"]


def test_above_a_max_and_zero_stay_errors(gpt_analysis):
    subject, analysis = gpt_analysis
    with pytest.raises(depthscope.InputError, match=r"n=2000 is above n's range \[2, 1024\]"):
        analysis_at(subject, analysis, {"b": 1, "n": 2000})
    with pytest.raises(depthscope.InputError, match="b=0: sizes must be positive"):
        analysis_at(subject, analysis, {"b": 0, "n": 16})


def test_predict_at_batch_1_says_so_and_prints_the_capture_numbers(capsys):
    code, out, err = run(capsys, ["predict", example("mlp.py"), "--at", "b=1", "--device-profile", "h100"])
    assert code == 0, err
    assert "depthscope: note: b=1 is below b's export range [2, inf]; evaluated by a concrete capture at b=1 (exact)" in err
    x = torch.randn(1, 32)
    truth = static_counts(mlp.model, (x,))
    assert truth["flops"] == counted_flops(mlp.model, (x,))
    row = next(line for line in out.splitlines() if line.startswith("b=1 (concrete capture)"))
    assert row.split()[3:5] == [str(truth["work"]), str(truth["depth"])]
    code, out, err = run(capsys, ["predict", example("mlp.py"), "--at", "b=1,2", "--format", "json"])
    points = json.loads(out)["points"]
    assert code == 0 and points[0]["concrete_at"] == {"b": 1} and "concrete_at" not in points[1]
    assert (points[0]["work"], points[0]["depth"]) == (truth["work"], truth["depth"])
    assert err.count("depthscope: note:") == 1


def test_analyze_json_carries_concrete_at_and_zero_exits_2(capsys):
    code, out, err = run(capsys, ["analyze", example("mlp.py"), "--at", "b=1", "--format", "json"])
    data = json.loads(out)
    assert code == 0 and "depthscope: note: b=1 is below" in err
    assert data["concrete_at"] == {"b": 1} and data["provenance"]["concrete_at"] == {"b": 1}
    assert data["at"] == {"b": 1} and data["views_at"] == {"b": 1}
    truth = static_counts(mlp.model, (torch.randn(1, 32),))
    assert {m: data["values"][m] for m in METRICS} == truth
    code, _, err = run(capsys, ["analyze", example("mlp.py"), "--at", "b=0"])
    assert code == 2 and err.strip() == "depthscope: error: b=0: sizes must be positive integers"


def test_two_dims_below_their_min_through_the_library():
    """cnn.py: b=1 and H=8 (H's range starts at 16) in one capture, W symbolic; via depthscope.analyze_file."""
    analysis = depthscope.analyze_file(example("cnn.py"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = analysis.evaluate(b=1, H=8, W=24)
        path = analysis.critical_path({"b": 1, "H": 8, "W": 24})
    assert any("b=1, H=8 are below their export ranges (b [2, inf], H [16, 4096])" in str(w.message) for w in caught)
    assert got.pop("concrete_at") == {"b": 1, "H": 8}
    x = torch.randn(1, 3, 8, 24)
    model = cnn.CNN()
    assert {m: got[m] for m in METRICS} == static_counts(model, (x,))
    assert got["flops"] == counted_flops(model, (x,))
    assert sum(analysis.value(s.depth, {"W": 24}) for s in path.steps) == got["depth"]


FAILS_AT_1 = '''
import torch
from torch.export import Dim
class M(torch.nn.Module):
    def forward(self, x):
        return x.squeeze().transpose(0, 1).sum(0)  # at b=1 squeeze drops the batch axis too
model = M()
example_inputs = (torch.randn(4, 8),)
dynamic_shapes = ({0: Dim("b")}, )
'''

BOUNDED = '''
import torch
from torch.export import Dim
model = torch.nn.Linear(8, 8)
example_inputs = (torch.randn(4, 8),)
dynamic_shapes = ({0: Dim("b", max=64)}, )
'''

AUTO = '''
import torch
from torch.export import Dim
class M(torch.nn.Module):
    def forward(self, x):
        return x.sum(1)
model = M()
example_inputs = (torch.randn(4, 8),)
dynamic_shapes = {"x": {0: Dim("b"), 1: Dim.AUTO}}
'''


@pytest.mark.parametrize("source,at,fragment", [
    (FAILS_AT_1, "b=1", "b=1 is below b's export range [2, inf], and the concrete capture at b=1 failed: "),
    (BOUNDED, "b=65", "b=65 is above b's range [2, 64]"),
    (AUTO, "x_dim1=1", "x_dim1 cannot be fixed by a concrete capture"),
], ids=["model-fails-at-1", "above-max", "unnamed-dim"])
def test_sizes_that_cannot_be_evaluated_exit_2(source, at, fragment, write_model, capsys):
    code, _, err = run(capsys, ["analyze", write_model(source), "--at", at] + (["--at", "b=2"] if "x_dim1" in at else []))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    if source is FAILS_AT_1:
        assert "IndexError" in lines[0] and "model_file.py:6" in lines[0]


def test_the_library_caches_the_capture_and_holds_its_model_weakly():
    import gc

    from torch.export import Dim

    model = torch.nn.Linear(8, 4)
    analysis = depthscope.analyze(model, (torch.randn(3, 8),), dynamic_shapes=({0: Dim("b")},))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert analysis.evaluate(b=1)["work"] == 2 * 8 * 4 + 4  # 32 multiply-adds and the bias row
    first, _ = analysis.concrete({"b": 1})
    assert analysis.concrete({"b": 1})[0] is first
    del model
    gc.collect()
    with pytest.raises(depthscope.InputError, match="has been freed"):
        analysis.evaluate(b=1)
