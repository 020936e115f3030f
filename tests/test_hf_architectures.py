"""Real architectures from tiny config objects (no downloads): the expected classes, nothing unmodeled."""

import pytest
import sympy
import torch
from torch.export import Dim

import depthscope
from depthscope.symbols import size_symbol

tf = pytest.importorskip("transformers")
b, n = size_symbol("b"), size_symbol("n")


def _text(cls, cfg, n_max=64):
    cfg._attn_implementation = "sdpa"
    model = cls(cfg).eval()
    ids = torch.randint(0, 50, (2, 16))
    return depthscope.analyze(model, (ids,), dynamic_shapes={"input_ids": {0: Dim("b"), 1: Dim("n", max=n_max)}},
                              engine="symbolic")


ARCHITECTURES = {
    "llama-gqa": lambda: _text(tf.LlamaForCausalLM, tf.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
        vocab_size=100, max_position_embeddings=64, use_cache=False)),
    "t5-encoder": lambda: _text(tf.T5EncoderModel, tf.T5Config(
        d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, vocab_size=100, use_cache=False)),
    "gpt2": lambda: _text(tf.GPT2LMHeadModel, tf.GPT2Config(
        n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64, use_cache=False)),
    "bert": lambda: _text(tf.BertModel, tf.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100,
        max_position_embeddings=64)),
}


@pytest.mark.parametrize("arch", list(ARCHITECTURES), ids=list(ARCHITECTURES))
def test_text_architecture(arch):
    report = ARCHITECTURES[arch]()
    assert report.unmodeled == ()
    assert report.big_o["work"] == b * n**2
    assert report.big_o["depth"] == sympy.log(n)
    assert "Max" not in str(report.depth)


def test_vit_over_batch_and_image_size():
    cfg = tf.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       image_size=32, patch_size=8)
    cfg._attn_implementation = "sdpa"
    model = tf.ViTModel(cfg).eval()
    report = depthscope.analyze(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes={"pixel_values": {0: Dim("b")}},
                                engine="symbolic")
    assert report.unmodeled == ()
    assert report.big_o["work"] == b
    assert report.big_o["depth"] == 1


@pytest.mark.skipif(not hasattr(tf, "MambaModel"), reason="this transformers has no Mamba")
def test_mamba_slow_path_is_sequential():
    """transformers' CPU Mamba runs its selective scan as a Python loop over n: export cannot keep n symbolic, the
    fitted engine takes over, and the loop's depth is O(n) (an associative scan would give O(log n))."""
    cfg = tf.MambaConfig(hidden_size=16, state_size=4, num_hidden_layers=1, vocab_size=100, use_cache=False)
    model = tf.MambaModel(cfg).eval()
    reasons = []
    report = depthscope.analyze(model, (torch.randint(0, 50, (2, 16)),), on_fallback=reasons.append,
                                dynamic_shapes={"input_ids": {0: Dim("b"), 1: Dim("n", max=32)}})
    assert reasons and "falling back to the fitted engine" in reasons[0]
    assert report.engine == "fitted" and report.fit.heldout_passed and report.unmodeled == ()
    assert {k: report.big_o[k] for k in ("work", "depth", "parallelism")} == {"work": b * n, "depth": n, "parallelism": b}
