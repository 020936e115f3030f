"""Hugging Face transformers models from tiny configs: attention's O(b*n**2) work, O(log n) depth, one closed form."""

from __future__ import annotations

import time

import pytest
import sympy
import torch
from torch.export import Dim

import depthscope
from depthscope.symbols import clog2, size_symbol

transformers = pytest.importorskip("transformers")

b, n = size_symbol("b"), size_symbol("n")
VOCAB = 100


def ids_spec(n_max: int) -> dict:
    return {"input_ids": {0: Dim("b", min=2), 1: Dim("n", min=2, max=n_max)}}


def tiny_gpt2():
    # use_cache=False: with a cache the forward returns a DynamicCache, which torch.export cannot flatten
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=128,
                                  use_cache=False, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def tiny_bert():
    cfg = transformers.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=256,
                                  vocab_size=VOCAB, max_position_embeddings=128)
    return transformers.BertModel(cfg).eval()


def analyze(model, n_max: int = 128, engine: str = "symbolic"):
    ids = torch.randint(0, VOCAB, (2, 16))
    return depthscope.analyze(model, (ids,), dynamic_shapes=ids_spec(n_max), engine=engine)


@pytest.fixture(scope="module", params=["gpt2", "bert"])
def hf_report(request):
    build = {"gpt2": tiny_gpt2, "bert": tiny_bert}[request.param]
    return analyze(build())


def test_hf_big_o(hf_report):
    assert hf_report.big_o["work"] == b * n**2, str(hf_report.work)
    assert hf_report.big_o["depth"] == sympy.log(n), str(hf_report.depth)


def test_hf_nothing_unmodeled(hf_report):
    assert hf_report.unmodeled == ()


def test_hf_depth_is_one_closed_form(hf_report):
    assert "Max" not in str(hf_report.depth)
    assert hf_report.symbols["n"].max == 128
    values = hf_report.evaluate(b=2, n=128)
    assert isinstance(values["depth"], int) and values["depth"] > 0
    assert isinstance(values["work"], int) and values["work"] > 0


def test_bert_position_limit_is_reported_with_a_fix():
    """BERT slices its position table by n: a Dim max above the table size is a guard export reports."""
    with pytest.raises(depthscope.CaptureError, match=r"Constraints violated \(n\).*max=128"):
        analyze(tiny_bert(), n_max=512)


def linear_in_clog2(depth: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """depth = a * ceil(log2 n) + c with integers a, c: return (a, c)."""
    term = clog2(n)
    a = sympy.expand(depth).coeff(term)
    c = sympy.expand(depth - a * term)
    assert a.is_Integer and c.is_Integer, depth
    return a, c


@pytest.mark.slow
def test_gpt2_small_on_meta_end_to_end():
    """GPT-2 small (12 layers, 768 wide, 50257 vocab), built without weight memory; its FLOPs against
    torch.utils.flop_counter on real CPU forwards at two sizes (timing belongs in bench/)."""
    from torch.utils.flop_counter import FlopCounterMode

    start = time.perf_counter()
    cfg = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024, use_cache=False)
    with torch.device("meta"):
        model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 16), device="meta")
    built = time.perf_counter()
    r = depthscope.analyze(model, (ids,), dynamic_shapes=ids_spec(1024))
    done = time.perf_counter()
    print(f"\nGPT-2 small: build {built - start:.2f} s, analyze {done - built:.2f} s, total {done - start:.2f} s, "
          f"{r.node_count} nodes; depth {r.depth}")
    assert r.unmodeled == ()
    assert "Max" not in str(r.depth)
    assert r.depth.free_symbols == {n}
    a, c = linear_in_clog2(r.depth)
    assert a > 0 and c > 0
    assert a % cfg.n_layer == 0, "every layer adds the same number of ceil(log2 n) terms"
    assert r.big_o["work"] == b * n**2
    assert r.big_o["depth"] == sympy.log(n)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    cfg._attn_implementation = "sdpa"
    real = transformers.GPT2LMHeadModel(cfg).eval()
    for batch, length in ((2, 16), (3, 40)):
        x = torch.randint(0, cfg.vocab_size, (batch, length))
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            real(x)  # the math path: flop_counter counts attention's two bmm (CPU flash attention it does not)
        assert r.evaluate(b=batch, n=length)["flops"] == counter.get_total_flops()
