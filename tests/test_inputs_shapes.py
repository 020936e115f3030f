"""dynamic_shapes and Dims: a bad spec is exit 2 with the inputs listed (never Dims silently dropped), names that
read back from the formulas, and export failures told apart: shape constraints fall back, the model's errors are
exit 2 at file:line, depthscope's own are internal (101)."""

import json

import pytest
import sympy
import torch
from torch.export import Dim

import depthscope
import depthscope.cli as cli
from conftest import example
from depthscope.symbols import parse_symbols

TWO_INPUTS = '''
import torch
from torch.export import Dim
class M(torch.nn.Module):
    def forward(self, tokens, mask, scale=2, *, extra=None):
        return (tokens * mask).softmax(-1) * scale
model = M
example_inputs = (torch.randn(2, 16), torch.randn(2, 16), 3)
{spec}
'''

BAD_SPECS = {
    "wrong key": 'dynamic_shapes = {"x": {1: Dim("n")}}',
    "wrong key next to a right one": 'dynamic_shapes = {"tokens": {1: Dim("n")}, "maks": {1: Dim("n")}}',
    "a parameter without an example": 'dynamic_shapes = {"tokens": {1: Dim("n")}, "extra": None}',
    "names no input (empty dict)": 'dynamic_shapes = {}',
    "empty tuple": 'dynamic_shapes = ()',
    "tuple too short": 'dynamic_shapes = ({1: Dim("n")},)',
    "tuple too long": 'dynamic_shapes = ({1: Dim("n")}, None, None, None)',
    "axis out of range": 'dynamic_shapes = {"tokens": {2: Dim("n")}, "mask": None, "scale": None}',
    "negative axis out of range": 'dynamic_shapes = {"tokens": {-3: Dim("n")}}',
    "huge axis": 'dynamic_shapes = {"tokens": {10**30: Dim("n")}}',
    "axis as a string": 'dynamic_shapes = {"tokens": {"1": Dim("n")}}',
    "axis as a float": 'dynamic_shapes = {"tokens": {1.0: Dim("n")}}',
    "per-axis tuple of the wrong length": 'dynamic_shapes = {"tokens": (None, Dim("n"), None)}',
    "a string as dynamic_shapes": 'dynamic_shapes = "tokens"',
    "a string for a Dim": 'dynamic_shapes = {"tokens": {1: "n"}}',
    "a string for a tensor's spec": 'dynamic_shapes = {"tokens": "n"}',
    "an int as dynamic_shapes": 'dynamic_shapes = 3',
    "a set": 'dynamic_shapes = {Dim("n")}',
    "a bare Dim": 'dynamic_shapes = Dim("n")',
    "a bare Dim for a tensor": 'dynamic_shapes = {"tokens": Dim("n")}',
    "a list of Dims for the inputs": 'dynamic_shapes = [Dim("n"), Dim("n"), None]',
    "Dims on an int input": 'dynamic_shapes = {"tokens": {1: Dim("n")}, "scale": {0: Dim("k")}}',
    "Dim.AUTO on an int input": 'dynamic_shapes = {"tokens": {1: Dim("n")}, "scale": Dim.AUTO}',
    "factory returning garbage": 'def dynamic_shapes():\n    return 42',
    "a static size that is not the example's": 'dynamic_shapes = {"tokens": {0: 4, 1: Dim("n")}}',
    "example outside the Dim's range": 'dynamic_shapes = {"tokens": {1: Dim("n", min=32)}}',
    "example above the Dim's max": 'dynamic_shapes = {"tokens": {1: Dim("n", max=8)}}',
    "one name, two ranges": 'dynamic_shapes = {"tokens": {1: Dim("n")}, "mask": {1: Dim("n", max=64)}}',
}


@pytest.mark.parametrize("case", list(BAD_SPECS), ids=list(BAD_SPECS))
@pytest.mark.parametrize("engine", ["auto", "fitted", "symbolic"])
def test_bad_dynamic_shapes_are_exit_2_listing_the_inputs(case, engine, write_model, capsys):
    path = write_model(TWO_INPUTS.format(spec=BAD_SPECS[case]))
    code = cli.main(["analyze", path, "--engine", engine, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err and "falling back" not in err, err
    assert "model_file.py" in lines[0] and out == ""
    if case not in ("example outside the Dim's range", "example above the Dim's max", "one name, two ranges",
                    "a static size that is not the example's"):
        assert "tokens" in lines[0] and "mask" in lines[0], lines[0]  # the forward's inputs, listed


def test_wrong_key_in_the_library_call():
    with pytest.raises(depthscope.InputError, match="not an input of the forward.*inputs are: input"):
        depthscope.analyze(torch.nn.Softmax(-1), (torch.randn(2, 8),), dynamic_shapes={"x": {1: Dim("n")}})


GOOD_SPECS = {
    "dict naming some inputs": ('{"tokens": {1: Dim("n")}, "mask": {1: Dim("n")}}', {"n"}),
    "tuple per input": ('({1: Dim("n")}, {1: Dim("n")}, None)', {"n"}),
    "per-axis tuple": ('{"tokens": (Dim.STATIC, Dim("n")), "mask": [None, Dim("n")]}', {"n"}),
    "negative axis": ('{"tokens": {-1: Dim("n")}, "mask": {-1: Dim("n")}}', {"n"}),
    "static size equal to the example's": ('{"tokens": {0: 2, 1: Dim("n")}, "mask": {1: Dim("n")}}', {"n"}),
    "a factory": ('(lambda: {"tokens": {0: Dim("b"), 1: Dim("n")}, "mask": {0: Dim("b"), 1: Dim("n")}})', {"b", "n"}),
}


@pytest.mark.parametrize("case", list(GOOD_SPECS), ids=list(GOOD_SPECS))
def test_good_dynamic_shapes_keep_their_dims(case, write_model, capsys):
    spec, symbols = GOOD_SPECS[case]
    path = write_model(TWO_INPUTS.format(spec=f"dynamic_shapes = {spec}"))
    code = cli.main(["analyze", path, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert set(data["symbols"]) == symbols and data["engine"] == "symbolic"


@pytest.mark.parametrize("size", [0, 1])
@pytest.mark.parametrize("axis", [0, 1])
def test_example_size_0_or_1_says_at_least_2(size, axis, write_model, capsys):
    shape = [2, 16]
    shape[axis] = size
    path = write_model(TWO_INPUTS.replace("torch.randn(2, 16), torch.randn(2, 16)", f"torch.randn{tuple(shape)}, "
                                          f"torch.randn{tuple(shape)}").format(
        spec=f'dynamic_shapes = {{"tokens": {{{axis}: Dim("b")}}, "mask": {{{axis}: Dim("b")}}}}'))
    code = cli.main(["analyze", path])
    err = capsys.readouterr().err
    assert code == 2 and "at least 2" in err and "specialises" in err and "b = 1" not in err, err
    assert "falling back" not in err


# ---------------------------------------------------------------------------------------------
# Dim names must read back from the formulas

BAD_NAMES = ["log", "Max", "Min", "ceiling", "floor", "Mod", "lambda", "True", "None", "ℕ", "ｎ", "M"]  # M: fast memory


@pytest.mark.parametrize("name", BAD_NAMES)
def test_dim_names_that_do_not_read_back_are_refused(name, write_model, capsys):
    path = write_model(TWO_INPUTS.format(spec=f'dynamic_shapes = {{"tokens": {{1: Dim({name!r})}}}}'))
    code = cli.main(["analyze", path, "--format", "json"])
    err = capsys.readouterr().err
    assert code == 2 and repr(name) in err and "rename" in err and "Traceback" not in err, err


def test_the_suggested_name_reads_back(write_model, capsys):
    path = write_model(TWO_INPUTS.format(spec='dynamic_shapes = {"tokens": {1: Dim("log")}}'))
    assert cli.main(["analyze", path]) == 2
    assert "'log_'" in capsys.readouterr().err
    path = write_model(TWO_INPUTS.format(spec='dynamic_shapes = {"tokens": {1: Dim("log_")}, "mask": {1: Dim("log_")}}'))
    assert cli.main(["analyze", path, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ns = parse_symbols(data["symbols"])
    assert sympy.sympify(data["work"]["expr"], locals=ns).free_symbols == {ns["log_"]}


def test_derived_dim_of_a_bad_root_is_refused():
    m = Dim("True")  # (torch cannot derive from Dims named like sympy functions at all)
    with pytest.raises(depthscope.InputError, match="'True'"):
        depthscope.analyze(torch.nn.Softmax(-1), (torch.randn(2, 8),), dynamic_shapes={"input": {1: 2 * m}})


def test_symbolic_hyperparameter_names_are_checked(write_model, capsys):
    path = write_model('''
import torch
def model(log: int = 8):
    return torch.nn.Linear(log, 4)
def example_inputs(log: int = 8):
    return (torch.randn(2, log),)
''')
    assert cli.main(["analyze", path, "--symbolic", "log"]) == 2
    err = capsys.readouterr().err
    assert "'log'" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Which export failures fall back

CONV = '''
import torch
from torch import nn
from torch.export import Dim
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        layers, c = [], 3
        for _ in range(5):
            layers += [nn.Conv2d(c, 4, 3, stride=2, padding=1), nn.ReLU()]
            c = 4
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
    def forward(self, x):
        return self.pool(self.body(x)).flatten(1)
model = Net
example_inputs = (torch.randn(2, 3, 64, 64),)
dynamic_shapes = {"x": {2: Dim("H", min=32), 3: Dim("W", min=32)}}
'''


def test_fallback_message_carries_every_suggested_fix(write_model, capsys):
    code = cli.main(["analyze", write_model(CONV), "--engine", "symbolic"])
    err = capsys.readouterr().err
    assert code == 2
    assert "H = Dim('H', min=33)" in err and "W = Dim('W', min=33)" in err, err
    code = cli.main(["analyze", write_model(CONV), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["engine"] == "fitted"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("depthscope: warning: ") and "falling back" in lines[0]
    assert "H = Dim('H', min=33)" in lines[0] and "W = Dim('W', min=33)" in lines[0]
    fixes = lines[0].split("suggested fix: ", 1)[1].split("; falling back")[0].split("; ")
    assert len(fixes) == len(set(fixes)), fixes  # each fix once, though torch repeats it per violated guard


def test_the_suggested_fix_works(write_model, capsys):
    fixed = CONV.replace('Dim("H", min=32)', 'Dim("H", min=33)').replace('Dim("W", min=32)', 'Dim("W", min=33)')
    assert cli.main(["analyze", write_model(fixed), "--engine", "symbolic", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"] == "symbolic"


def test_torchs_own_suggested_fixes_are_all_kept(write_model, capsys):
    path = write_model('''
import torch
from torch.export import Dim
class M(torch.nn.Module):
    def forward(self, x, y):
        if x.shape[1] > 100 or y.shape[1] > 50:
            return x.sum() + y.sum()
        return x.sum() * y.sum()
model = M
example_inputs = (torch.randn(2, 16), torch.randn(2, 8))
dynamic_shapes = {"x": {1: Dim("n")}, "y": {1: Dim("m")}}
''')
    assert cli.main(["analyze", path, "--engine", "symbolic"]) == 2
    err = capsys.readouterr().err
    assert "n = Dim('n', max=100)" in err and "m = Dim('m', max=50)" in err, err


FORWARD_BUG = '''
import torch
from torch.export import Dim
class M(torch.nn.Module):
    def forward(self, x):
        y = x.softmax(-1)
        return y[:, :, 0]
model = M
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {"x": {1: Dim("n")}}
'''


@pytest.mark.parametrize("engine", ["auto", "symbolic", "fitted"])
def test_an_error_in_the_forward_does_not_fall_back(engine, write_model, capsys):
    code = cli.main(["analyze", write_model(FORWARD_BUG), "--engine", engine])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "falling back" not in err, err
    assert "model_file.py:7" in lines[0] and "IndexError" in lines[0]


def test_an_error_in_a_helper_module_next_to_the_model_is_the_models(tmp_path, capsys):
    (tmp_path / "depthscope_inputs_helpers.py").write_text("def head(x):\n    raise ValueError('bad head')\n")
    path = tmp_path / "net.py"
    path.write_text(FORWARD_BUG.replace("import torch\n", "import torch\nfrom depthscope_inputs_helpers import head\n", 1)
                    .replace("return y[:, :, 0]", "return head(y)"))
    assert cli.main(["analyze", str(path)]) == 2
    assert "bad head" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["_output_like", "recurrent_standins"])
def test_a_bug_in_a_stand_in_is_an_internal_error(target, monkeypatch, capsys):
    import depthscope.capture.standins as standins

    def broken(*args, **kwargs):
        raise RuntimeError("stand-in bug")

    monkeypatch.setattr(standins, target, broken)
    code = cli.main(["analyze", example("lstm.py")])
    err = capsys.readouterr().err
    assert code == 101 and "internal error" in err and "stand-in bug" in err and "falling back" not in err, err
    code = cli.main(["analyze", example("lstm.py"), "--debug"])
    assert code == 101 and "Traceback" in capsys.readouterr().err


def test_a_bug_in_the_stand_ins_context_is_an_internal_error(monkeypatch, capsys):
    import contextlib

    import depthscope.capture.export as export

    @contextlib.contextmanager
    def broken(model, extra=()):
        raise KeyError("standins setup")
        yield

    monkeypatch.setattr(export, "standins", broken)
    assert cli.main(["analyze", example("attention.py")]) == 101
    assert "internal error" in capsys.readouterr().err


def test_a_size_name_is_never_evaluated(tmp_path, capsys):
    """Names from the command line (or a model file) reach the read-back check; only identifiers are parsed."""
    marker = tmp_path / "ran"
    code = cli.main(["analyze", example("gpt.py"), "--symbolic", f"__import__('pathlib').Path({str(marker)!r}).touch()"])
    err = capsys.readouterr().err
    assert code == 2 and "would not read back" in err and not marker.exists(), err
