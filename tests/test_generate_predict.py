"""predict --generate on a tiny GPT-2: TTFT, time per token and total against an independent per-node roofline,
b=1 through a concrete capture against a static export and torch's flop_counter, the decode regime over b."""

import pytest
import sympy
import torch

from depthscope.generate.analysis import generation_analysis
from depthscope.generate.hf import DecodeStep, Prefill
from depthscope.model_file import ModelSpec
from depthscope.pipeline import Subject, analyze_subject
from depthscope.predict.generate import complete, predict_generation
from depthscope.predict.profiles import load_profile
from depthscope.symbols import size_symbol

tf = pytest.importorskip("transformers")

TINY = ("import torch\nfrom transformers import GPT2Config, GPT2LMHeadModel\n\n"
        "model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=128, "
        "bos_token_id=0, eos_token_id=None)).eval()\nexample_inputs = (torch.randint(1, 128, (2, 16)),)\n")
SIZES = {"b": 1, "n": 12, "T": 5}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("genpredict") / "tiny.py"
    path.write_text(TINY)
    gen = generation_analysis(str(path), engine="symbolic")
    profile = load_profile("h100")
    sizes, _ = complete(gen, SIZES, {})
    return gen, profile, sizes, predict_generation(gen, profile, sizes)["generate"]


def roofline_by_hand(analysis, profile, values) -> float:
    """sum over launched nodes of max(work/peak, bytes/bandwidth) + depth*t + launches*o, from the sympy formulas."""
    subs = {size_symbol(k): v for k, v in values.items() if k in analysis.symbols}
    total, launches = 0.0, 0
    for node in analysis.nodes:
        if node.status == "free":
            continue
        w, q = float(sympy.sympify(node.cost.work).subs(subs)), float(sympy.sympify(node.cost.bytes).subs(subs))
        if w > 0 or q > 0:
            launches += 1
        total += max(w / profile.peak_flops, q / profile.memory_bandwidth)
    depth = float(sympy.sympify(analysis.depth).subs(subs))
    return total + depth * profile.level_time_s + launches * profile.launch_overhead_s


def test_times_equal_a_per_node_recomputation(tiny):
    gen, profile, sizes, out = tiny
    here = gen.at(sizes)
    assert here.prefill.provenance.concrete_at == {"b": 1} and here.decode_step.provenance.concrete_at == {"b": 1}
    assert out["ttft_s"] == pytest.approx(roofline_by_hand(here.prefill, profile, sizes), rel=1e-9)
    assert out["time_per_token_s"] == pytest.approx(roofline_by_hand(here.decode_step, profile, sizes), rel=1e-9)
    n, tokens = sizes["n"], sizes["T"]
    steps = [roofline_by_hand(here.decode_step, profile, {"b": 1, "c": c}) for c in range(n, n + tokens - 1)]
    assert out["decode_steps"] == tokens - 1 and sizes["c"] == n  # c defaults to n
    assert out["total_s"] == pytest.approx(out["ttft_s"] + sum(steps), rel=1e-9)


def test_b1_parts_equal_a_static_export_and_flop_counter(tiny):
    """The concrete capture at b=1 against a fully static export at (1, 12) and torch's count of an eager run."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    gen, _, sizes, out = tiny
    here = gen.at(sizes)
    lm = gen.parts_at.specs.prefill.model.lm
    ids = torch.randint(1, 128, (1, sizes["n"]))
    static = analyze_subject(Subject(ModelSpec(Prefill(lm).eval(), (ids,), {}, None, name="static")),
                             engine="symbolic")
    got = here.prefill.evaluate(b=1, n=sizes["n"])
    assert static.evaluate() == {k: v for k, v in got.items() if k in static.evaluate()}
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as prefill_count:
            _, keys, values = Prefill(lm)(ids)
        with FlopCounterMode(display=False) as step_count:
            DecodeStep(lm)(ids[:, -1:], keys, values)
    assert prefill_count.get_total_flops() == got["flops"]
    assert step_count.get_total_flops() == here.decode_step.evaluate(b=1, c=sizes["n"])["flops"]
    assert out["prefill"]["work"] == got["work"]


def test_decode_regime_over_b(tiny):
    gen, profile, sizes, out = tiny
    regime = out["batch_regime"]
    assert out["decode_step"]["bound"] in ("memory", "launch") and regime["first"] == out["decode_step"]["bound"]
    assert regime["range"][0] == 1 and regime["held"] == {"c": sizes["n"]}
    for change in regime["changes"]:  # each change is at the first b whose bound differs (by the same tables)
        at = predict_generation(gen, profile, {**sizes, "b": change["at"]})["generate"]["decode_step"]["bound"]
        before = predict_generation(gen, profile, {**sizes, "b": change["at"] - 1})["generate"]["decode_step"]["bound"]
        assert at == change["bound"] != before
    assert out["sentence"].startswith(f"decode at b=1, c={sizes['n']} is {regime['first']}-bound")


def test_cli_json_and_analyze_at_b1(tiny, tmp_path, capsys):
    import json

    from depthscope.cli import main

    gen, _, sizes, out = tiny
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    assert main(["predict", str(path), "--generate", "--at", "b=1", "--at", "n=12"]) == 2
    assert capsys.readouterr().err.startswith("depthscope: error: predict --generate: give the number of new tokens")
    assert main(["predict", str(path), "--generate", "--at", "b=1", "--at", "n=12", "--at", "T=5",
                 "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)["generate"]
    assert got["ttft_s"] == pytest.approx(out["ttft_s"]) and got["total_s"] == pytest.approx(out["total_s"])
    assert main(["analyze", str(path), "--generate", "--at", "b=1", "--at", "n=12", "--at", "c=12", "--at", "T=5",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "b=1 is below b's export range [2, inf]; evaluated by a concrete capture at b=1" in captured.err
    section = json.loads(captured.out)["generate"]
    here = gen.at(sizes)
    assert section["prefill"]["values"] == {m: here.prefill.evaluate(b=1, n=12)[m] for m in gen.metrics}
    assert section["decode_step"]["values"] == {m: here.decode_step.evaluate(b=1, c=12)[m] for m in gen.metrics}
    assert section["generation"]["values"] == here.evaluate(b=1, n=12, T=5)


GPT2_SMALL_META = ("import torch\nfrom transformers import GPT2Config, GPT2LMHeadModel\n\nwith torch.device('meta'):\n"
                   "    model = GPT2LMHeadModel(GPT2Config()).eval()\n"
                   "example_inputs = (torch.randint(1, 50257, (2, 16), device='meta'),)\n")


@pytest.mark.slow
def test_gpt2_small_decode_regime_changes_by_b_256(tmp_path):
    """The acceptance on GPT-2 small (built on the meta device: no weights allocated) on h100 at c=128."""
    path = tmp_path / "gpt2.py"
    path.write_text(GPT2_SMALL_META)
    gen = generation_analysis(str(path), engine="symbolic")
    profile = load_profile("h100")
    one = predict_generation(gen, profile, {"b": 1, "n": 128, "T": 2})["generate"]
    many = predict_generation(gen, profile, {"b": 256, "n": 128, "T": 2})["generate"]
    assert one["decode_step"]["bound"] in ("memory", "launch")
    assert many["decode_step"]["bound"] != one["decode_step"]["bound"]
    assert one["per_token"]["weight_bytes"] == 4 * 124_439_808  # GPT-2 small's parameters (wte tied), fp32
