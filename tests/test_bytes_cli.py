"""Bytes in the outputs: JSON keys, --fast-memory and its pyproject default, and `check` budgets on bytes."""

from __future__ import annotations

import json

import pytest
import sympy

import depthscope.cli as cli
from depthscope.check.cache import Cache
from depthscope.check.summary import CACHE_FORMAT
from depthscope.options import parse_bytes
from depthscope.symbols import parse_symbols

from conftest import example

# work O(n**2), bytes O(n**2): every element against every other, materialised
PAIRWISE = '''
import torch
from torch import nn
from torch.export import Dim


class Pairwise(nn.Module):
    def forward(self, x):
        return (x.unsqueeze(-1) - x.unsqueeze(-2)).abs().sum(-1)


model = Pairwise
example_inputs = (torch.randn(16),)
dynamic_shapes = {"x": {0: Dim("n")}}
'''


def run(args, capsys):
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def attention_json():
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(["analyze", example("attention.py"), "--format", "json", "--at", "b=2", "--at", "n=64",
                         "--fast-memory", "48KiB"])
    assert code == 0
    return json.loads(buf.getvalue())


def test_json_has_bytes_fused_bytes_and_io(attention_json):
    data = attention_json
    assert data["schema"] == "depthscope.report/3"
    for key in ("bytes", "bytes_fused", "io"):
        assert set(data[key]) == {"expr", "big_o"}
    assert data["fast_memory"] == 48 * 1024 and "estimate" in data["bytes_labels"]["bytes_fused"]
    ns = parse_symbols(data["symbols"])
    b, n = ns["b"], ns["n"]
    assert sympy.parse_expr(data["bytes"]["big_o"], local_dict=ns) == b * n
    assert not sympy.parse_expr(data["io"]["expr"], local_dict=ns).free_symbols - {b, n}  # M = 48 KiB substituted
    bytes_at = sympy.parse_expr(data["bytes"]["expr"], local_dict=ns).subs({b: 2, n: 64})
    assert data["values"]["bytes"] == bytes_at and data["values"]["io"] > 0
    for row in data["ops"] + data["modules"]:
        assert {"bytes", "io", "flops", "flops_per_byte", "work_per_byte"} <= set(row)
    per_op = sum(sympy.parse_expr(o["bytes"], local_dict=ns) for o in data["ops"])
    assert sympy.expand(per_op - sympy.parse_expr(data["bytes"]["expr"], local_dict=ns)) == 0


@pytest.mark.parametrize("text, size", [("49152", 49152), ("48KiB", 49152), ("50MB", 50 * 10**6),
                                        ("40MiB", 40 << 20), ("2 GiB", 2 << 30), ("512B", 512), ("48k", 48000)])
def test_fast_memory_sizes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["48XB", "-1", "0", "1.5MB", "lots", ""])
def test_a_bad_fast_memory_is_one_line_exit_2(text, capsys):
    code, _, err = run(["analyze", example("mlp.py"), "--fast-memory", text], capsys)
    assert code == 2 and err.startswith("depthscope: error:") and len(err.strip().splitlines()) == 1


def test_fast_memory_default_comes_from_pyproject(tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text('[tool.depthscope]\nfast-memory = "40MiB"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["analyze", example("mlp.py"), "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["fast_memory"] == 40 << 20
    (tmp_path / "pyproject.toml").write_text('[tool.depthscope]\nfast-memory = "much"\n')
    code, _, err = run(["analyze", example("mlp.py")], capsys)
    assert code == 2 and "fast-memory" in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def project(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DEPTHSCOPE_CACHE_KEY_FILE", str(tmp_path_factory.getbasetemp() / "bytes-test-key"))
    (tmp_path / "pairwise.py").write_text(PAIRWISE)

    def check(entry: dict, *args, capsys):
        lines = ["[tool.depthscope]", "", "[[tool.depthscope.check]]", 'path = "pairwise.py"']
        lines += [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
        (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n")
        return run(["check", "--config", str(tmp_path / "pyproject.toml"), *args], capsys)

    check.root = tmp_path
    return check


def test_a_bytes_budget_fails_on_a_bytes_regression(project, capsys):
    code, out, err = project({"work": "n**2", "bytes": "n"}, capsys=capsys)
    assert code == 1
    assert "bytes O(n**2) exceeds budget O(n)" in out + err and "heaviest op aten.abs" in out + err  # reads and writes n**2
    code, out, err = project({"work": "n**2", "bytes": "n**2"}, capsys=capsys)
    assert code == 0, out + err


def test_a_lock_from_before_bytes_still_checks(project, capsys):
    assert project({}, "--update", capsys=capsys)[0] == 0
    lock_path = project.root / "depthscope.lock.json"
    lock = json.loads(lock_path.read_text())
    assert set(lock["models"]["pairwise.py"]) == {"engine", "work", "depth", "bytes"}
    del lock["models"]["pairwise.py"]["bytes"]
    lock_path.write_text(json.dumps(lock))
    code, out, err = project({}, capsys=capsys)
    assert code == 0 and "bytes is not in depthscope.lock.json" in out + err


def test_cache_entries_of_the_previous_format_are_reanalysed(tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DEPTHSCOPE_CACHE_KEY_FILE", str(tmp_path_factory.getbasetemp() / "bytes-test-key"))
    cache = Cache(str(tmp_path))
    key = "ab" * 32
    (tmp_path / f"{key[:40]}.json").write_text(json.dumps(
        {"format": CACHE_FORMAT - 1, "key": key, "summary": {"work": {}}, "inputs": {}, "mac": ""}))
    summary, why, suspicious = cache.get(key, str(tmp_path))
    assert summary is None and "another depthscope version" in why and not suspicious
