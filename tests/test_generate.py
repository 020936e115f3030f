"""--generate on transformers causal LMs from tiny configs: classes, closed forms against summed step analyses,
against a real generate() run's steps, FLOPs against torch's flop_counter, a static cache's padding waste."""

import re

import pytest
import sympy
import torch

from depthscope.generate.analysis import build_generation, generation_analysis
from depthscope.generate.hf import DecodeStep, Prefill, hf_specs
from depthscope.generate.specs import GenerationSpecs
from depthscope.model_file import load_model_file
from depthscope.symbols import size_symbol

try:  # torchvision's CUDA build next to a CPU torch breaks transformers' imports (TORCH_NOTES.md)
    torch.ops.torchvision.nms  # noqa: B018
except (AttributeError, RuntimeError):
    _lib = torch.library.Library("torchvision", "DEF")
    _lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _lib.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
tf = pytest.importorskip("transformers")

b, c, n, T = (size_symbol(s) for s in ("b", "c", "n", "T"))
CONFIGS = {  # model files with no generation code: the model and example input_ids only
    "gpt2": "GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=128, "
            "bos_token_id=0, eos_token_id=None))",
    "qwen2": "Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, "
             "num_key_value_heads=2, intermediate_size=128, vocab_size=128, max_position_embeddings=128, "
             "bos_token_id=0, eos_token_id=None))",
}
SIZES = [(2, 5, 4), (3, 17, 9), (2, 40, 33)]  # (b, n, T)


def model_file(directory, name: str, build: str) -> str:
    path = directory / f"{name}.py"
    names = ", ".join(sorted(set(re.findall(r"([A-Z]\w+)\(", build))))
    path.write_text(f"import torch\nfrom transformers import {names}\n\nmodel = {build}.eval()\n"
                    "example_inputs = (torch.randint(1, 128, (2, 16)),)\n")
    return str(path)


@pytest.fixture(scope="module", params=list(CONFIGS))
def gen(request, tmp_path_factory):
    return generation_analysis(model_file(tmp_path_factory.mktemp(request.param), request.param,
                                          CONFIGS[request.param]), engine="symbolic")


def test_classes_with_the_width_fixed(gen):
    assert gen.prefill.big_o["work"] == b * n**2 and gen.prefill.big_o["depth"] == sympy.log(n)
    assert gen.decode_step.big_o["work"] == b * c and gen.decode_step.big_o["depth"] == sympy.log(c)
    assert gen.decode_step.symbols["c"].max == 127  # the position table holds n + T - 1 <= 128 tokens
    work, depth = gen.generation["work"], gen.generation["depth"]
    assert sympy.expand(work.big_o - (b * n**2 + b * n * T + b * T**2)) == 0
    assert sympy.expand(depth.big_o - (T * sympy.log(n) + T * sympy.log(T))) == 0  # = T*log(n + T)
    assert work.closed and depth.closed and not depth.expr.has(sympy.Max, sympy.Sum)
    assert gen.exactness == "exact" and gen.prefill.unmodeled == () and gen.decode_step.unmodeled == ()


def test_closed_forms_equal_the_summed_step_analyses(gen):
    for bv, nv, tv in SIZES:
        first = gen.prefill.evaluate(b=bv, n=nv)
        steps = [gen.decode_step.evaluate(b=bv, c=nv + i) for i in range(tv - 1)]
        assert gen.evaluate(b=bv, n=nv, T=tv) == {m: first[m] + sum(s[m] for s in steps) for m in gen.metrics}


def test_real_generate_runs_the_steps_the_formulas_sum(gen, request):
    """generate(max_new_tokens=T): one forward over the prompt, then T - 1 single tokens at past lengths n..n+T-2."""
    model = load_model_file(model_file(request.getfixturevalue("tmp_path"), "lm", CONFIGS[gen.model])).model
    seen = []

    def record(module, args, kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        seen.append((kwargs["input_ids"].shape[1], cache.get_seq_length() if cache is not None else 0))

    model.register_forward_pre_hook(record, with_kwargs=True)
    bv, nv, tv = 2, 9, 6
    out = model.generate(torch.randint(1, 128, (bv, nv)), max_new_tokens=tv, min_new_tokens=tv, do_sample=False)
    assert out.shape == (bv, nv + tv)
    assert seen == [(nv, 0)] + [(1, nv + i) for i in range(tv - 1)]
    total = gen.prefill.evaluate(b=bv, n=nv)["work"] + sum(gen.decode_step.evaluate(b=bv, c=past)["work"]
                                                         for _, past in seen[1:])
    assert gen.evaluate(b=bv, n=nv, T=tv)["work"] == total


def test_flops_equal_flop_counter_on_eager_runs(gen, request):
    """torch's flop_counter on the same prefill and decode step run eagerly (SDPA's math path, which it counts)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = load_model_file(model_file(request.getfixturevalue("tmp_path"), "lm", CONFIGS[gen.model])).model
    ids = torch.randint(1, 128, (3, 11))
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        with FlopCounterMode(display=False) as prefill_count:
            _, keys, values = Prefill(model)(ids)
        with FlopCounterMode(display=False) as step_count:
            DecodeStep(model)(ids[:, -1:], keys, values)
    assert prefill_count.get_total_flops() == gen.prefill.evaluate(b=3, n=11)["flops"]
    assert step_count.get_total_flops() == gen.decode_step.evaluate(b=3, c=11)["flops"]


def test_a_static_cache_costs_the_full_capacity_every_step(gen, tmp_path):
    capacity = size_symbol("C")
    specs = GenerationSpecs(None, None, "n", "b", "a static cache", static_cache=True)
    static = build_generation(gen.model, gen.prefill, gen.decode_step, specs)
    work = static.static["work"].expr
    expected = gen.prefill.work + (T - 1) * gen.decode_step.work.xreplace({c: capacity - 1})
    assert sympy.expand(work - expected) == 0
    values = static.evaluate_static(b=2, n=10, T=7, C=17)
    dynamic = static.evaluate(b=2, n=10, T=7, C=17)
    assert values["static"]["work"] - values["waste"]["work"] == dynamic["work"]
    assert values["waste"]["work"] > 0 and values["waste"]["depth"] >= 0
    # the flag comes from the model's generation config
    path = model_file(tmp_path, "static_lm", CONFIGS[gen.model])
    spec = load_model_file(path)
    spec.model.generation_config.cache_implementation = "static"
    assert hf_specs(spec).static_cache


@pytest.mark.parametrize("build", [
    "LlamaForCausalLM(LlamaConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, "
    "intermediate_size=64, vocab_size=128, max_position_embeddings=64))",
    "MistralForCausalLM(MistralConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, "
    "num_key_value_heads=2, intermediate_size=64, vocab_size=128, max_position_embeddings=64, sliding_window=None))",
    "GPTNeoXForCausalLM(GPTNeoXConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, "
    "intermediate_size=64, vocab_size=128, max_position_embeddings=64))",
], ids=["llama", "mistral", "gpt-neox"])
def test_other_architectures_decode_in_linear_work_and_log_depth(build, tmp_path):
    gen = generation_analysis(model_file(tmp_path, "lm", build), engine="symbolic")
    assert gen.decode_step.big_o["work"] == b * c and gen.decode_step.big_o["depth"] == sympy.log(c)
    assert gen.decode_step.unmodeled == () and gen.generation["depth"].closed


def test_bytes_per_token_against_hand_counts(gen):
    """KV cache read per step: 2 (keys, values) * layers * c * kv_heads * head_dim * 4 bytes (float32) per sequence;
    Qwen2 here has 2 KV heads for 4 query heads (GQA), GPT-2 4 of 4."""
    kv_heads = {"gpt2": 4, "qwen2": 2}[gen.model]
    assert sympy.expand(gen.kv_cache_bytes - 2 * 2 * c * kv_heads * 16 * 4 * b) == 0
    if gen.model == "gpt2":  # wte, wpe, 2 blocks (ln_1, c_attn, c_proj, ln_2, c_fc, mlp c_proj), ln_f; the head is wte
        block = 2 * 64 + (64 * 192 + 192) + (64 * 64 + 64) + 2 * 64 + (64 * 256 + 256) + (256 * 64 + 64)
        assert gen.weight_bytes == 4 * (128 * 64 + 128 * 64 + 2 * block + 2 * 64)
    assert gen.bytes_per_token == gen.weight_bytes + gen.kv_cache_bytes
