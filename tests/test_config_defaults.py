"""[tool.depthscope] in pyproject.toml feeds every command's defaults through click's default_map."""

import json

import pytest

import depthscope.cli as cli

MODEL = """
import torch
from torch.export import Dim

class M(torch.nn.Module):
    def forward(self, x):
        return x.cumsum(1)

model = M()
example_inputs = (torch.randn(2, 8),)
dynamic_shapes = {"x": {1: Dim("n", max=256)}}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "m.py").write_text(MODEL)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(capsys, args):
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_configured_engine_reaches_analyze_and_predict(project, capsys):
    (project / "pyproject.toml").write_text('[tool.depthscope]\nengine = "fitted"\n')
    code, out, err = _run(capsys, ["analyze", "m.py", "--format", "json"])
    assert code == 0, err
    assert json.loads(out)["engine"] == "fitted"
    code, out, err = _run(capsys, ["predict", "m.py", "--format", "json", "--device-profile", "cpu"])
    assert code == 0, err
    assert json.loads(out)["engine"] == "fitted"
    # the command line still wins
    code, out, err = _run(capsys, ["analyze", "m.py", "--format", "json", "--engine", "symbolic"])
    assert code == 0 and json.loads(out)["engine"] == "symbolic"


@pytest.mark.parametrize("text", ['[tool.depthscope]\nengine = "fast"\n', "[tool.depthscope\n", '[tool]\ndepthscope = 3\n'])
@pytest.mark.parametrize("command", [["analyze", "m.py"], ["predict", "m.py"], ["validate", "m.py", "--sizes", "n=4,8"],
                                     ["check", "m.py"]])
def test_broken_config_is_exit_2_for_every_command_that_reads_it(project, capsys, text, command):
    (project / "pyproject.toml").write_text(text)
    code, out, err = _run(capsys, command)
    assert code == 2, (out, err)
    assert "pyproject.toml" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_commands_that_read_no_config_ignore_a_broken_one(project, capsys):
    (project / "pyproject.toml").write_text("[tool.depthscope\n")
    code, out, _ = _run(capsys, ["rules", "--format", "json"])
    assert code == 0 and json.loads(out)
