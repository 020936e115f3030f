"""The model file cannot decide the exit code or write into the report: exits, BaseExceptions, stdout, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys

import pytest

import depthscope.cli as cli
from conftest import ROOT

HEAD = '''
import os, sys, torch
from torch.export import Dim
class M(torch.nn.Module):
    def forward(self, x):
        {forward}
        return x.softmax(-1)
model = M
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {{"x": {{1: Dim("n")}}}}
'''


def source(at_import: str = "pass", forward: str = "pass", factory: str | None = None) -> str:
    text = HEAD.format(forward=forward) + at_import + "\n"
    if factory:
        text += f"def model():\n    {factory}\n    return M()\n"
    return text


class NotIntercepted(BaseException):
    """os._exit or os.abort reached the test's stand-in: depthscope let the model end the process."""


@pytest.fixture(autouse=True)
def exits_cannot_end_pytest(monkeypatch):
    """Without the guard, a model's os._exit would end this test process (and the suite, with exit 0)."""
    def fake(*args):
        raise NotIntercepted(args)

    for module in {os, sys.modules.get("posix")} - {None}:
        monkeypatch.setattr(module, "_exit", fake)
        monkeypatch.setattr(module, "abort", fake)
    return fake


EXITS = {
    "sys.exit(0) at import": dict(at_import="sys.exit(0)"),
    "sys.exit(3) at import": dict(at_import="sys.exit(3)"),
    "sys.exit() at import": dict(at_import="sys.exit()"),
    "sys.exit('text') at import": dict(at_import="sys.exit('bye')"),
    "raise SystemExit(1) at import": dict(at_import="raise SystemExit(1)"),
    "os._exit(0) at import": dict(at_import="os._exit(0)"),
    "from os import _exit at import": dict(at_import="from os import _exit\n_exit(1)"),
    "posix._exit at import": dict(at_import="import posix\nposix._exit(0)"),
    "os.abort at import": dict(at_import="os.abort()"),
    "GeneratorExit at import": dict(at_import="raise GeneratorExit()"),
    "custom BaseException at import": dict(at_import="class Quit(BaseException): pass\nraise Quit('stop')"),
    "KeyboardInterrupt raised by the model": dict(at_import="raise KeyboardInterrupt"),
    "sys.exit(0) in forward": dict(forward="sys.exit(0)"),
    "sys.exit(3) in forward": dict(forward="sys.exit(3)"),
    "os._exit(0) in forward": dict(forward="os._exit(0)"),
    "os._exit(1) in forward": dict(forward="os._exit(1)"),
    "GeneratorExit in forward": dict(forward="raise GeneratorExit()"),
    "BaseException in forward": dict(forward="raise BaseException('odd')"),
    "sys.exit in the model factory": dict(factory="sys.exit(0)"),
    "os._exit in the model factory": dict(factory="os._exit(0)"),
}


@pytest.mark.parametrize("case", list(EXITS), ids=list(EXITS))
@pytest.mark.parametrize("command", [["analyze"], ["analyze", "--engine", "fitted"], ["predict"]],
                         ids=["analyze", "fitted", "predict"])
def test_model_exits_are_exit_2_naming_the_file(case, command, write_model, capsys, exits_cannot_end_pytest):
    path = write_model(source(**EXITS[case]), name="exiting_model.py")
    code = cli.main([*command, path, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("depthscope: error: ") and "exiting_model.py" in lines[0]
    assert out == ""
    assert os._exit is exits_cannot_end_pytest  # what was there before is back


def test_the_line_of_the_exit_is_named(write_model, capsys):
    path = write_model(source(forward="sys.exit(0)"))
    assert cli.main(["analyze", path]) == 2
    err = capsys.readouterr().err
    assert "model_file.py:6:" in err and "sys.exit(0)" in err and "exporting" in err


def test_exit_in_validate_timing_runs(write_model, capsys):
    # the model exits only at the timed sizes: outside export, inside `depthscope validate`'s own runs
    path = write_model(source(forward="if x.shape[1] == 64 and not torch.compiler.is_compiling() and "
                                      "not isinstance(x, torch._subclasses.FakeTensor): os._exit(0)"))
    code = cli.main(["validate", path, "--sizes", "n=32,64", "--repeats", "1", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2 and "model_file.py" in err and "os._exit(0)" in err and "Traceback" not in err, err


def test_debug_shows_the_traceback(write_model, capsys):
    path = write_model(source(at_import="raise GeneratorExit()"))
    assert cli.main(["analyze", path, "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_library_call_raises_input_error(write_model):
    import depthscope

    with pytest.raises(depthscope.InputError, match="sys.exit"):
        depthscope.analyze_file(write_model(source(forward="sys.exit(0)")))


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs SIGINT")
def test_real_ctrl_c_still_ends_with_130(write_model, capsys):
    # the model sends itself SIGINT, as a terminal's Ctrl-C would: that is the user's, not the model's
    path = write_model(source(at_import="import signal\nos.kill(os.getpid(), signal.SIGINT)\nimport time\ntime.sleep(5)"))
    assert cli.main(["analyze", path]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_subprocess_exit_code_and_stdout(tmp_path):
    """The real process: exit 2 whatever the model asks, stdout empty (python -m depthscope)."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    for body in ("os._exit(0)", "sys.exit(3)"):  # (the other exits: in-process above)
        path = tmp_path / "m.py"
        path.write_text(source(forward=body))
        proc = subprocess.run([sys.executable, "-m", "depthscope", "analyze", str(path), "--format", "json"],
                              capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 2, (body, proc.stderr)
        assert proc.stdout == "" and "m.py:6" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# stdout belongs to the report

PRINTS = '''
import os, sys, ctypes, torch
from torch.export import Dim
print("print at import")
os.write(1, b"fd 1 at import\\n")
ctypes.CDLL(None).printf(b"libc printf at import\\n")
sys.stdout.write("sys.stdout at import\\n")
class M(torch.nn.Module):
    def forward(self, x):
        print("print in forward", x.shape)
        os.write(1, b"fd 1 in forward\\n")
        ctypes.CDLL(None).printf(b"libc printf in forward\\n")
        return x.softmax(-1)
def model():
    print("print in the factory")
    return M()
def example_inputs():
    os.write(1, b"fd 1 in example_inputs\\n")
    return (torch.randn(2, 16),)
dynamic_shapes = {"x": {1: Dim("n")}}
'''


@pytest.mark.parametrize("command", [["analyze"], ["analyze", "--engine", "fitted"], ["predict"]],
                         ids=["analyze", "fitted", "predict"])
def test_model_output_goes_to_stderr(command, write_model, capfd):
    path = write_model(PRINTS)
    code = cli.main([*command, path, "--format", "json"])
    out, err = capfd.readouterr()
    assert code == 0, err
    json.loads(out)  # nothing but the report
    for text in ("print at import", "fd 1 at import", "libc printf at import", "sys.stdout at import",
                 "print in the factory", "fd 1 in example_inputs", "print in forward", "fd 1 in forward"):
        assert text in err and text not in out


def test_stdout_is_restored_after_the_model_ran(write_model, capfd):
    path = write_model(PRINTS)
    stdout = sys.stdout
    assert cli.main(["analyze", path, "--format", "json"]) == 0
    assert sys.stdout is stdout
    os.write(1, b"after\n")
    print("print after")
    out, _ = capfd.readouterr()
    assert out.endswith("after\nprint after\n")


def test_json_stays_clean_in_a_real_process(tmp_path):
    path = tmp_path / "noisy.py"
    path.write_text(PRINTS)
    proc = subprocess.run([sys.executable, "-m", "depthscope", "analyze", str(path), "--format", "json"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "noisy"
    assert "libc printf in forward" in proc.stderr


# ---------------------------------------------------------------------------------------------
# hostile model files: still one line, exit 2 (or a clean report), never a traceback or 101

HOSTILE = {
    "closes sys.stdout": ("import sys\nsys.stdout.close()", 0),
    "closes fd 1": ("import os\nos.close(1)", 0),
    "replaces sys.stdout and sys.stderr": ("import sys, io\nsys.stdout = io.StringIO()\nsys.stderr = None", 0),
    "changes directory": ("import os\nos.chdir('/')", 0),
    "sys.exit with a huge payload": ("import sys\nsys.exit('x' * 10**6)", 2),
    "an exception whose str raises": ("class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
                                      "raise E()", 2),
    "a BaseException whose str raises": ("class E(BaseException):\n    def __str__(self):\n        raise E()\n"
                                         "raise E()", 2),
    "a multi-line message": ("raise ValueError('one\\ntwo\\nthree')", 2),
    "a megabyte message": ("raise ValueError('y' * 10**6)", 2),
    "example_kwargs is a tensor": ("example_kwargs = torch.randn(3)", 2),
    "symbolic is a number": ("symbolic = 5", 2),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_model_files(case, write_model, capfd):
    body, expected = HOSTILE[case]
    cwd = os.getcwd()
    path = write_model(source(at_import=body))
    code = cli.main(["analyze", path, "--format", "json"])
    out, err = capfd.readouterr()
    assert os.getcwd() == cwd
    assert code == expected, err
    lines = [line for line in err.splitlines() if line.strip()]
    if expected == 0:
        assert json.loads(out)["model"] == "model_file" and lines == []
    else:
        assert out == "" and len(lines) == 1 and len(lines[0]) < 1000 and "Traceback" not in err, err


def test_a_path_that_is_not_utf8_is_refused(tmp_path, capsys):
    path = tmp_path / os.fsdecode(b"bad\xff.py")
    path.write_text(source())
    assert cli.main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not valid UTF-8" in err and "Traceback" not in err


def test_unicode_paths_work(tmp_path, capsys):
    folder = tmp_path / "ünï cödé 模型"
    folder.mkdir()
    path = folder / "mödel 1.py"
    path.write_text(source(forward="sys.exit(0)"))
    assert cli.main(["analyze", str(path)]) == 2
    assert "mödel 1.py:6" in capsys.readouterr().err
    path.write_text(source())
    assert cli.main(["analyze", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "mödel 1"
