"""Hugging Face causal LMs: the prefill and one decode step with a DynamicCache, as export-ready modules.

transformers' DynamicCache is not a pytree node unless registered (transformers registers it only inside its own
export helpers), so the step takes the cache as per-layer key and value tensors [batch, kv_heads, c, head_dim] and
rebuilds a DynamicCache inside its forward: export sees plain tensors whose axis 2 is the Dim c. Grouped-query
attention exports through SDPA's enable_gqa (TRANSFORMERS_SDPA_FORCE_GQA=1 during capture): transformers'
repeat_kv path makes torch.export fail on a guard it cannot prove (Min(16*c + 16, 32*c + 32) = 16*c + 16 for
Qwen2), and eager decoding does not copy the heads either. Both modules end with the greedy choice of the next
token, as generate(do_sample=False) does, and compute logits for the last position only (logits_to_keep=1).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re

import torch

from depthscope.errors import InputError
from depthscope.generate.specs import (GenerationSpecs, cache_dim, check_names, dim_name, parameter_bytes, prompt_dims,
                                       stored_bytes)
from depthscope.guard import exception_text, user_code
from depthscope.model_file import ModelSpec

GQA_FLAG = "TRANSFORMERS_SDPA_FORCE_GQA"


def is_transformers_model(model) -> bool:
    return any(cls.__module__.startswith("transformers.") for cls in type(model).__mro__)


def causal_lm_problem(model) -> str | None:
    """Why a transformers model cannot be analyzed as a decoder-only generator (None when it can)."""
    name = type(model).__name__
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return f"{name} is an encoder-decoder model; --generate analyzes decoder-only language models"
    can = getattr(model, "can_generate", None)
    if not callable(can) or not can():
        return (f"{name} has no language-model head (it cannot generate); use its causal-LM class, e.g. "
                "GPT2LMHeadModel or LlamaForCausalLM")
    return None


def _cache_keyword(model) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"  # transformers 5 renamed past_key_values


def _layers(cache) -> tuple[list, list]:
    layers = [layer for layer in cache.layers if getattr(layer, "keys", None) is not None]
    return [layer.keys for layer in layers], [layer.values for layer in layers]


class Prefill(torch.nn.Module):
    """The forward over the prompt that writes the cache, then the first new token (greedy)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.keyword = _cache_keyword(lm)
        self.last_only = "logits_to_keep" in inspect.signature(lm.forward).parameters

    def forward(self, input_ids):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.lm.config)
        extra = {"logits_to_keep": 1} if self.last_only else {}
        out = self.lm(input_ids=input_ids, use_cache=True, **{self.keyword: cache}, **extra)
        keys, values = _layers(cache)
        return out.logits[:, -1].argmax(-1), keys, values


class DecodeStep(torch.nn.Module):
    """One token with a cache of c past tokens (per-layer keys and values): the next token and the grown cache."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.keyword = _cache_keyword(lm)

    def forward(self, input_ids, keys, values):
        from transformers import DynamicCache

        cache = DynamicCache(list(zip(keys, values)), config=self.lm.config)
        out = self.lm(input_ids=input_ids, use_cache=True, **{self.keyword: cache})
        keys, values = _layers(cache)
        return out.logits[:, -1].argmax(-1), keys, values


@contextlib.contextmanager
def forced_gqa():
    """TRANSFORMERS_SDPA_FORCE_GQA=1 while capturing, restored afterwards."""
    old = os.environ.get(GQA_FLAG)
    os.environ[GQA_FLAG] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(GQA_FLAG, None)
        else:
            os.environ[GQA_FLAG] = old


def _prompt(spec: ModelSpec, where: str) -> torch.Tensor:
    ids = spec.example_kwargs.get("input_ids")
    if ids is None and spec.example_inputs:
        ids = spec.example_inputs[0]
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point():
        raise InputError(f"{where}: --generate needs example input_ids: an integer tensor of shape (batch, prompt "
                         "length), as example_inputs[0] or example_kwargs['input_ids']")
    return ids


def position_limit(model) -> int | None:
    """The model's context length (max_position_embeddings), when its config has one."""
    value = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 2 else None


def hf_specs(spec: ModelSpec) -> GenerationSpecs:
    """The prefill and decode-step specs of a transformers causal LM (its own Dims on input_ids, else b and n)."""
    where = spec.source or spec.name
    model = spec.model
    problem = causal_lm_problem(model)
    if problem:
        raise InputError(f"{where}: {problem}")
    ids = _prompt(spec, where)
    limit = position_limit(model)
    batch, length = prompt_dims(spec, "input_ids", where)
    if batch is None and length is None and not spec.dynamic_shapes:
        batch = torch.export.Dim("b", min=2)
        length = torch.export.Dim("n", min=2, max=limit) if limit else torch.export.Dim("n", min=2)
    check_names(dim_name(batch), dim_name(length), where)
    if ids.shape[0] < 2 and dim_name(batch):
        raise InputError(f"{where}: the example input_ids have batch {ids.shape[0]}; give a batch of 2 or more "
                         "(torch.export specialises sizes 0 and 1)")
    prompt_shape = {0: batch, 1: length}
    prefill = ModelSpec(Prefill(model).eval(), (ids,), {}, {"input_ids": prompt_shape}, name=f"{spec.name} prefill",
                        source=spec.source, namespace=spec.namespace)
    with user_code("running the prefill of", where, os.path.abspath(spec.source) if spec.source else None):
        try:
            with torch.no_grad():
                _, keys, values = prefill.model(ids)
        except Exception as exc:  # noqa: BLE001 - transformers' own failure on this config
            raise InputError(f"{where}: running the prefill once (to build an example cache) raised "
                             f"{type(exc).__name__}: {exception_text(exc)}") from exc
    token = ids[:, -1:].clone()  # a view would export with its base tensor's sizes as extra symbols

    def step_spec(max_len: int | None) -> ModelSpec:
        c = cache_dim(max_len)
        axes = {0: batch, 2: c} if dim_name(batch) else {2: c}
        shapes = {"input_ids": {0: batch}, "keys": [dict(axes) for _ in keys], "values": [dict(axes) for _ in values]}
        return ModelSpec(DecodeStep(model).eval(), (token, [k.clone() for k in keys], [v.clone() for v in values]), {}, shapes,
                         name=f"{spec.name} decode step", source=spec.source, namespace=spec.namespace)

    capture = ("the KV cache enters the decode step as per-layer key and value tensors of length c, rebuilt into a "
               "DynamicCache inside the step; grouped-query attention through SDPA's enable_gqa")
    top = limit - 1 if limit else None
    window = sliding_window(model)
    if window is not None:
        top = min(top, window - 1) if top else window - 1
        capture += (f"; sliding-window layers keep at most {window - 1} past tokens, so c stops there (from then on "
                    f"every step costs step(c = {window - 1}); the sums cover n + T - 1 <= {window})")
    static = getattr(getattr(model, "generation_config", None), "cache_implementation", None) == "static"
    tensors = list(keys) + list(values)
    cache_bytes = stored_bytes(tensors, [{0: "b", 2: "c"}] * len(tensors), dim_name(batch))
    return GenerationSpecs(prefill, step_spec(top), dim_name(length) or int(ids.shape[1]),
                           dim_name(batch), capture, cache_bytes=cache_bytes, weight_bytes=parameter_bytes(model),
                           static_cache=static, context=forced_gqa, retry_cache_max=step_spec)


def sliding_window(model) -> int | None:
    """The smallest sliding window among the cache layers transformers builds for this config (None: none)."""
    from transformers import DynamicCache

    layers = DynamicCache(config=model.config).layers
    windows = [w for w in (getattr(layer, "sliding_window", None) for layer in layers) if isinstance(w, int) and w > 2]
    return min(windows) if windows else None


_SUGGESTED = re.compile(r"\bc = Dim\('c', max=(\d+)\)")


def suggested_cache_max(message: str) -> int | None:
    """torch's suggested bound on c in a constraint violation (a sliding window caps the cache), else None."""
    m = _SUGGESTED.search(message)
    return int(m.group(1)) if m else None


__all__ = ["DecodeStep", "GQA_FLAG", "Prefill", "causal_lm_problem", "forced_gqa", "hf_specs", "is_transformers_model",
           "position_limit", "sliding_window", "suggested_cache_max"]
