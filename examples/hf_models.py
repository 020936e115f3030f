"""Real architectures at their real size, built from config objects on the meta device (no downloads, no weights).

    depthscope analyze examples/hf_models.py                 # GPT-2 small (default)
    DEPTHSCOPE_HF_MODEL=llama-70b depthscope analyze examples/hf_models.py

Choices: gpt2 (GPT-2 small), bert (BERT-base), llama-70b (Llama-3-70B shapes: 80 layers, hidden 8192, 64 heads,
8 KV heads, intermediate 28672, vocab 128256), vit (ViT-B/16; dynamic batch only), t5-encoder (T5-base encoder).
Widths are fixed, so work is O(b*n**2) and depth O(log(n)) in the sequence length for the text models.
Needs the `hf` extra (transformers).
"""

import os

import torch
from torch.export import Dim

CHOICE = os.environ.get("DEPTHSCOPE_HF_MODEL", "gpt2")


def _config(choice: str):
    import transformers as tf

    if choice == "gpt2":
        return tf.GPT2LMHeadModel, tf.GPT2Config(use_cache=False), 1024
    if choice == "bert":
        return tf.BertModel, tf.BertConfig(), 512
    if choice == "llama-70b":
        cfg = tf.LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                             num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, use_cache=False)
        return tf.LlamaForCausalLM, cfg, 8192
    if choice == "vit":
        return tf.ViTModel, tf.ViTConfig(), None
    if choice == "t5-encoder":
        return tf.T5EncoderModel, tf.T5Config(use_cache=False), 512
    raise ValueError(f"unknown DEPTHSCOPE_HF_MODEL {choice!r}")


def model():
    cls, cfg, _ = _config(CHOICE)
    cfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        return cls(cfg).eval()


def example_inputs():
    if CHOICE == "vit":
        return (torch.randn(2, 3, 224, 224, device="meta"),)
    return (torch.randint(0, 100, (2, 16), device="meta"),)


def _dynamic():
    _, _, max_len = _config(CHOICE)
    if CHOICE == "vit":
        return {"pixel_values": {0: Dim("b")}}
    return {"input_ids": {0: Dim("b"), 1: Dim("n", max=max_len)}}


dynamic_shapes = _dynamic()
