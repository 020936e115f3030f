"""`analyze --generate` through the command line: the protocol example in three formats, refusals as exit 2, and
`check` budgets on generation (a decode step made O(c**2), a generation depth made superlinear in T)."""

import json

import pytest
import sympy

import depthscope.cli as cli
from conftest import example
from depthscope.symbols import parse_symbols

PROTOCOL = '''
import torch
from torch import nn
from torch.export import Dim
{extra}

class LM(nn.Module):
    """Embedding, attention of one query over the cache, head: the smallest model with a KV cache."""

    def __init__(self):
        super().__init__()
        self.emb, self.kv, self.head = nn.Embedding(50, 16), nn.Linear(16, 32), nn.Linear(16, 50)

    def attend(self, x, keys, values):
        weights = torch.softmax(x @ keys.transpose(1, 2), dim=-1)
        return self.head(weights @ values)

    def forward(self, idx):
        x = self.emb(idx)
        k, v = self.kv(x).split(16, dim=-1)
        return self.attend(x, k, v).argmax(-1), (k, v)


def make_cache(batch, length):
    return (torch.zeros(batch, length, 16), torch.zeros(batch, length, 16))


def decode_step(model, token, cache):
    x = model.emb(token)
    k, v = model.kv(x).split(16, dim=-1)
    keys, values = torch.cat([cache[0], k], 1), torch.cat([cache[1], v], 1)
    {step}
    return model.attend(x, keys, values).argmax(-1), (keys, values)


model = LM
example_inputs = (torch.randint(0, 50, (2, 8)),)
dynamic_shapes = {{"idx": {{0: Dim("b"), 1: Dim("n")}}}}
'''
QUADRATIC = "x = x + ((keys @ keys.transpose(1, 2)) @ keys).mean(1, keepdim=True)  # every pair of cached tokens: O(c**2)"
SEQUENTIAL = ("x = x + scan(lambda h, kt: (h + kt, h.clone()), torch.zeros_like(keys[:, 0]), keys, dim=1)[0][:, None]"
              "  # a walk along the cache: depth O(c)")
SCAN = "from torch._higher_order_ops.scan import scan"


def run(args, capsys):
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_protocol_example_in_every_format(capsys):
    path = example("decode_gpt.py")
    code, out, err = run(["analyze", path, "--generate", "--format", "json", "--at", "b=2", "--at", "n=16",
                          "--at", "T=5", "--at", "c=100"], capsys)
    assert code == 0, err
    report = json.loads(out)
    gen = report["generate"]
    assert set(gen) >= {"prefill", "decode_step", "generation", "convention", "static_cache"}
    assert report["work"] == gen["prefill"]["work"]  # top level: the prefill, as analyze shows a forward
    ns = parse_symbols(gen["generation"]["symbols"])
    assert set(gen["generation"]["symbols"]) == {"b", "n", "T"} and set(gen["decode_step"]["symbols"]) == {"b", "c"}
    for part in ("prefill", "decode_step", "generation"):
        for metric in ("work", "depth", "flops"):
            assert set(gen[part][metric]) >= {"expr", "big_o"}
            sympy.parse_expr(gen[part][metric]["expr"], local_dict=ns)
    assert gen["decode_step"]["work"]["big_o"] == "b*c" and gen["decode_step"]["depth"]["big_o"] == "log(c)"
    assert gen["generation"]["work"]["big_o"] == "T**2*b + T*b*n + b*n**2"
    # the values at --at: the closed form equals prefill(16) + steps at c = 16, 17, 18, 19
    depth = gen["generation"]["values"]["depth"]
    assert depth == gen["prefill"]["values"]["depth"] + sum(6 * (c + 1 - 1).bit_length() + 222 for c in range(16, 20))
    code, out, _ = run(["analyze", path, "--generate", "--format", "markdown"], capsys)
    assert code == 0 and "## generation of T new tokens" in out and "| work" in out
    code, out, _ = run(["analyze", path, "--generate", "--at", "b=2", "--at", "c=9"], capsys)
    assert code == 0 and "at b=2, c=9" in out and "ops per token" in out


@pytest.mark.parametrize("args, protocol, fragment", [
    ([], False, "needs a decoder-only language model"),
    (["--train"], False, "does not combine with --train"),
    (["--at", "x=3"], True, "unknown size symbol 'x'"),
    (["--at", "n=8", "--at", "b=2", "--at", "T=0"], True, "the number of new tokens is at least 1"),
])
def test_refusals_are_one_line_exit_2(args, protocol, fragment, capsys, write_model):
    path = write_model(PROTOCOL.format(extra="", step="")) if protocol else example("mlp.py")
    code, _, err = run(["analyze", path, "--generate", *args], capsys)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_missing_make_cache_and_a_taken_name(capsys, write_model):
    source = PROTOCOL.format(extra="", step="").replace("def make_cache", "def make_cache_")
    code, _, err = run(["analyze", write_model(source), "--generate"], capsys)
    assert code == 2 and "make_cache is missing" in err
    source = PROTOCOL.format(extra="", step="").replace('Dim("n")', 'Dim("c")')
    code, _, err = run(["analyze", write_model(source), "--generate"], capsys)
    assert code == 2 and "takes a name --generate uses" in err


def test_check_budgets_on_generation(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEPTHSCOPE_CACHE_KEY_FILE", str(tmp_path / "key"))  # outside the project
    tmp_path = tmp_path / "project"
    tmp_path.mkdir()
    models = {"good.py": PROTOCOL.format(extra="", step=""),
              "quadratic.py": PROTOCOL.format(extra="", step=QUADRATIC),
              "sequential.py": PROTOCOL.format(extra=SCAN, step=SEQUENTIAL)}
    budgets = {"decode_work": "b*c", "decode_depth": "log(c)", "decode_bytes": "b*c", "generate_bytes": "b*n**2 + b*n*T + b*T**2", "prefill_work": "b*n**2", "prefill_depth": "log(n)",
               "generate_work": "b*n**2 + b*n*T + b*T**2", "generate_depth": "log(n) + T*log(n + T)"}
    lines = ["[tool.depthscope]", f'cache-dir = "{tmp_path / "cache"}"']
    for name, source in models.items():
        (tmp_path / name).write_text(source)
        lines += ["[[tool.depthscope.check]]", f'path = "{name}"'] + [f'{k} = "{v}"' for k, v in budgets.items()]
    (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n")
    code, out, err = run(["check", "--config", str(tmp_path / "pyproject.toml")], capsys)
    assert code == 1, (out, err)
    breaches = {line.split(":")[0]: line for line in out.splitlines() if "exceeds budget" in line}
    assert "good.py" not in breaches
    assert "quadratic.py: decode_work O(b*c**2) exceeds budget O(b*c)" in out
    assert "quadratic.py: decode_bytes O(b*c**2) exceeds budget O(b*c)" in out  # the c x c scores are written
    assert "sequential.py: decode_depth O(c) exceeds budget O(log(c))" in out
    assert "sequential.py: generate_depth O(T**2 + T*n) exceeds budget" in out
    # a second run comes from the cache with the same verdicts
    code2, out2, _ = run(["check", "--config", str(tmp_path / "pyproject.toml")], capsys)
    assert code2 == 1 and "3 from cache" in out2


def test_a_files_own_prefill_and_the_sums_over_its_steps(write_model):
    from depthscope.generate.analysis import generation_analysis

    source = PROTOCOL.format(extra="", step="") + "\n\ndef prefill(model, tokens):\n    return model(tokens)\n"
    gen = generation_analysis(write_model(source), engine="symbolic")
    assert "the file's prefill(model, tokens)" in gen.capture
    assert gen.decode_step.big_o["work"] == gen.decode_step.symbols["b"].symbol * gen.decode_step.symbols["c"].symbol
    first = gen.prefill.evaluate(b=3, n=6)
    steps = [gen.decode_step.evaluate(b=3, c=x) for x in range(6, 6 + 7 - 1)]
    assert gen.evaluate(b=3, n=6, T=7) == {m: first[m] + sum(s[m] for s in steps) for m in gen.metrics}
