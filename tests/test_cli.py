"""The CLI's contract: exit codes, one clear stderr line for bad input, parseable JSON."""

import json

import pytest
import sympy

import depthscope.cli as cli
from conftest import example
from depthscope.symbols import parse_symbols

GUARDED = '''
import torch
from torch.export import Dim
class M(torch.nn.Module):
    def forward(self, x):
        if x.shape[1] > 128:
            return x * 2
        return x + 1
model = M
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {"x": {1: Dim("n")}}
'''

DATA_DEPENDENT = '''
import torch
from torch.export import Dim
class M(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x + 1
model = M
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {"x": {1: Dim("n")}}
'''

FORWARD_RAISES = '''
import torch
class M(torch.nn.Module):
    def forward(self, x):
        raise ValueError("the widths do not match")
model = M
example_inputs = (torch.randn(2, 16),)
'''

SHAPE_MISMATCH = '''
import torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)
    def forward(self, x):
        return self.lin(x)
model = M
example_inputs = (torch.randn(2, 16),)
'''

CUSTOM_OP = '''
import torch
from torch.export import Dim
@torch.library.custom_op("depthscope_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x.clone()
@mystery.register_fake
def _(x):
    return torch.empty_like(x)
class M(torch.nn.Module):
    def forward(self, x):
        return mystery(x) + 1
model = M
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {"x": {1: Dim("n")}}
'''

BAD_INPUTS = {
    "import-error": ("import torch\nx = 1 / 0\n", ["model_file.py:2", "ZeroDivisionError"]),
    "syntax-error": ("def f(:\n", ["model_file.py:1", "syntax error"]),
    "no-model": ("import torch\nmodel_ = 3\n", ["defines no `model`", "example_inputs"]),
    "model-not-module": ("model = 3\nexample_inputs = ()\n", ["`model` is a int"]),
    "no-example-inputs": ("import torch\nmodel = torch.nn.ReLU()\n", ["defines no `example_inputs`"]),
    "factory-raises": ("def model():\n    raise RuntimeError('no config')\nexample_inputs = ()\n", ["model_file.py:2", "no config"]),
    "forward-raises": (FORWARD_RAISES, ["model_file.py:5", "ValueError", "the widths do not match"]),
    "shape-mismatch": (SHAPE_MISMATCH, ["RuntimeError", "[2, 16] X [8, 4]"]),
    "guard-cuts-dim": (GUARDED, ["Constraints violated (n)", "Dim('n', max=128)"]),
    "data-dependent-branch": (DATA_DEPENDENT, ["data-dependent", "torch.cond"]),
}


def _run(capsys, argv):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_model_file_exits_2_with_one_clear_line(case, write_model, capsys):
    source, expected = BAD_INPUTS[case]
    code, out, err = _run(capsys, ["analyze", write_model(source), "--engine", "symbolic"])
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for fragment in expected:
        assert fragment in lines[0]


def test_auto_engine_says_why_it_falls_back(write_model, capsys):
    code, out, err = _run(capsys, ["analyze", write_model(GUARDED), "--format", "json"])
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "falling back to the fitted engine" in lines[0] and "Dim('n', max=128)" in lines[0]
    assert json.loads(out)["engine"] == "fitted"


def test_data_dependent_branch_is_refused_without_a_fallback(write_model, capsys):
    # not a shape constraint: the fitted engine would fail the same way, so auto does not try it
    code, _, err = _run(capsys, ["analyze", write_model(DATA_DEPENDENT)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "falling back" not in err and "data-dependent" in lines[0] and "model_file.py:6" in lines[0]


def test_missing_file(capsys):
    code, _, err = _run(capsys, ["analyze", "does/not/exist.py"])
    assert code == 2 and "no such file" in err and "Traceback" not in err


def test_directory_is_not_a_model(tmp_path, capsys):
    code, _, err = _run(capsys, ["analyze", str(tmp_path)])
    assert code == 2 and "Traceback" not in err


@pytest.mark.parametrize("argv,fragment", [
    (["--at", "n"], "expected NAME=INT"),
    (["--at", "n=-3"], "expected NAME=INT"),
    (["--at", "q=4"], "unknown size symbol 'q'"),
    (["--at", "n=0", "--at", "b=2"], "n=0: sizes must be positive integers"),
    (["--at", "n=64"], "no value for b"),
    (["--format", "yaml"], "Invalid value for '--format'"),
    (["--no-such-flag"], "No such option"),
], ids=["at-no-value", "at-negative", "at-unknown-symbol", "at-zero", "at-missing-symbol", "bad-format", "bad-flag"])
def test_usage_errors_exit_2(argv, fragment, capsys):
    code, _, err = _run(capsys, ["analyze", example("attention.py"), *argv])
    assert code == 2
    assert fragment in err and "Traceback" not in err


def test_strict_fails_on_unmodeled_op(write_model, capsys):
    path = write_model(CUSTOM_OP)
    code, out, err = _run(capsys, ["analyze", path])
    assert code == 0 and "no cost rule" in out and "depthscope_test.mystery.default" in out
    code, out, err = _run(capsys, ["analyze", path, "--strict"])
    assert code == 1 and "depthscope_test.mystery.default" in err


def test_unmodeled_op_is_counted_not_zero(write_model):
    import depthscope

    report = depthscope.analyze_file(write_model(CUSTOM_OP))
    assert report.unmodeled == (("depthscope_test.mystery.default", 1),)
    n = sympy.Symbol("n", integer=True, positive=True)
    # default for the unknown op: one op per output element (2*n), depth 1; then the add: 2*n, depth 1
    assert sympy.expand(report.work - 4 * n) == 0
    assert report.depth == 2


def test_internal_error_exits_101_without_traceback(monkeypatch, capsys):
    import depthscope.pipeline

    def boom(path, **kwargs):
        raise RuntimeError("engine bug")

    monkeypatch.setattr(depthscope.pipeline, "analyze_subject", boom)
    code, _, err = _run(capsys, ["analyze", example("attention.py")])
    assert code == 101 and "internal error" in err and "engine bug" in err and "Traceback" not in err
    code, _, err = _run(capsys, ["analyze", example("attention.py"), "--debug"])
    assert code == 101 and "Traceback" in err


def test_json_is_complete_and_every_expression_parses(capsys):
    code, out, _ = _run(capsys, ["analyze", example("attention.py"), "--format", "json", "--at", "b=2", "--at", "n=128"])
    assert code == 0
    data = json.loads(out)
    assert data["schema"] == "depthscope.report/3"
    assert data["engine"] == "symbolic"
    for key in ("model", "symbols", "work", "depth", "parallelism", "ops", "modules", "critical_path", "unmodeled", "at", "values"):
        assert key in data
    assert data["symbols"] == {"b": {"min": 2, "max": None}, "n": {"min": 2, "max": None}}
    assert data["work"]["big_o"] == "b*n**2"
    assert data["depth"]["big_o"] == "log(n)"
    ns = parse_symbols(data["symbols"])
    strings = [data[k][f] for k in ("work", "depth", "parallelism") for f in ("expr", "big_o")]
    strings += [o["work"] for o in data["ops"]] + [o["depth"] for o in data["ops"]]
    strings += [m["work"] for m in data["modules"]] + [s["depth"] for s in data["critical_path"]]
    for s in strings:
        sympy.sympify(s, locals=ns)  # test-only parse with just the symbols and log/Max/Min/ceiling/floor
    work = sympy.sympify(data["work"]["expr"], locals=ns)
    assert int(work.subs({ns["b"]: 2, ns["n"]: 128})) == data["values"]["work"]


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_text_formats_show_all_sections(fmt, capsys):
    code, out, _ = _run(capsys, ["analyze", example("attention.py"), "--format", fmt, "--at", "b=2", "--at", "n=1024"])
    assert code == 0
    for fragment in ("O(b*n**2)", "O(log(n))", "critical path", "modules", "ops", "aten.scaled_dot_product_attention.default"):
        assert fragment in out


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "depthscope", "analyze", example("attention.py"), "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["work"]["big_o"] == "b*n**2"


def test_a_size_given_twice_is_a_usage_error(capsys):
    from conftest import example

    code = cli.main(["analyze", example("mlp.py"), "--at", "b=3", "--at", "b=4"])
    err = capsys.readouterr().err
    assert code == 2 and "given twice" in err and len(err.strip().splitlines()) == 1, err
    code = cli.main(["predict", example("mlp.py"), "--at", "b=3", "--at", "b=4"])
    err = capsys.readouterr().err
    assert code == 2 and "given twice" in err, err
