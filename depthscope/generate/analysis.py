"""The generation analysis: prefill, one decode step and T new tokens, as one object (`generation_analysis`).

T new tokens follow transformers' generate(max_new_tokens=T): the prefill gives the first, and T - 1 decode steps
at c = n, n + 1, ..., n + T - 2 give the rest. Work, FLOPs (and bytes) add up; depth adds too, because each
step's token is the previous step's output (sequential composition: an upper bound on the unrolled graph's
longest path, which may start a step's shape-only work, such as position ids, before its token is ready).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Callable, Mapping

import sympy

from depthscope.engine.analysis import APPROXIMATE, Analysis, as_number
from depthscope.errors import CaptureError, DepthscopeError, InputError, ShapeConstraintError
from depthscope.generate.closed import evaluate_sums, sum_steps, summed_big_o
from depthscope.generate.hf import hf_specs, is_transformers_model, suggested_cache_max
from depthscope.generate.protocol import has_protocol, protocol_specs
from depthscope.generate.specs import CACHE_LENGTH, CAPACITY, NEW_TOKENS, GenerationSpecs
from depthscope.guard import exception_text
from depthscope.pipeline import Subject, analysis_at, analyze_subject, load_subject
from depthscope.symbols import SymbolInfo, size_symbol

METRICS = ("work", "depth", "flops", "bytes")  # those both analyses have (bytes: once Analysis counts them)


@dataclass(frozen=True)
class Metric:
    """One generation formula: exact `expr` (a closed form, or with a sympy Sum where `closed` is False)."""

    expr: sympy.Expr
    big_o: sympy.Expr
    closed: bool = True
    reason: str | None = None


@dataclass(frozen=True, eq=False)
class Generation:
    """Prefill and decode-step Analyses and the generation formulas in b, n and T."""

    model: str
    prefill: Analysis
    decode_step: Analysis
    generation: Mapping[str, Metric]
    symbols: Mapping[str, SymbolInfo]  # of the generation formulas: the prompt's sizes and T (C when static)
    prompt_length: sympy.Expr  # n (a symbol, or the static prompt length)
    launches_per_token: int  # ops of one decode step that are not views (one kernel each, unfused)
    capture: str  # how the cache was captured
    kv_cache_bytes: sympy.Expr = sympy.S.Zero  # the cache one decode step reads, in b and c
    weight_bytes: int = 0  # the parameters, read once per decode step
    static: Mapping[str, Metric] | None = None  # a static cache: every step costs step(c = C - 1)
    waste: Mapping[str, Metric] | None = None  # static minus dynamic: the work spent on empty slots
    notes: tuple[str, ...] = field(default=())
    parts_at: Callable | None = field(default=None, repr=False)  # sizes -> (prefill, step, notes): analysis_at per part

    def at(self, sizes: Mapping[str, int]) -> "Generation":
        """This generation with each part evaluated where `sizes` are (below a Dim's min: a concrete capture's)."""
        if self.parts_at is None or not sizes:
            return self
        prefill, step, said = self.parts_at(dict(sizes))
        if prefill is self.prefill and step is self.decode_step:
            return self
        return replace(self.parts_at.rebuild(prefill, step), notes=self.notes + said, parts_at=self.parts_at)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.generation)

    @property
    def bytes_per_token(self) -> sympy.Expr:
        """What a decode step must read at least: every weight once and the KV cache (in b and c)."""
        return self.weight_bytes + self.kv_cache_bytes

    @property
    def exactness(self) -> str:
        """The worse of the two analyses' (a kept Sum is exact, only not in closed form)."""
        levels = ("exact", "fitted-exact", APPROXIMATE)
        return max(self.prefill.exactness, self.decode_step.exactness, key=levels.index)

    @property
    def cache_range(self) -> tuple[int, int | None]:
        info = self.decode_step.symbols.get(CACHE_LENGTH)
        return (info.min, info.max) if info is not None else (2, None)

    def symbol_values(self, sizes: Mapping[str, int]) -> dict:
        """Check sizes for the generation formulas (every symbol, T >= 1, the last step's c within range)."""
        missing = [n for n in self.symbols if n not in sizes]
        if missing:
            raise InputError(f"no value for {', '.join(missing)}; give every symbol a size (e.g. --at {missing[0]}=16)")
        prompt = {k: v for k, v in sizes.items() if k in self.prefill.symbols}
        values = self.prefill.symbol_values(prompt)
        tokens = sizes[NEW_TOKENS]
        if not isinstance(tokens, int) or tokens < 1:
            raise InputError(f"{NEW_TOKENS}={tokens}: the number of new tokens is at least 1")
        values[size_symbol(NEW_TOKENS)] = tokens
        n = int(self.prompt_length.xreplace(values))
        low, high = self.cache_range
        if tokens > 1 and high is not None and n + tokens - 2 > high:
            raise InputError(f"{NEW_TOKENS}={tokens}: the last decode step would see c = n + T - 2 = {n + tokens - 2} "
                             f"past tokens, outside c's range [{low}, {high}] (the model's context or sliding window)")
        if self.static is not None:
            capacity = sizes.get(CAPACITY)
            if not isinstance(capacity, int) or capacity < n + tokens - 1 or (high is not None and capacity > high + 1):
                raise InputError(f"{CAPACITY}={capacity}: a static cache needs C >= n + T - 1 = {n + tokens - 1} "
                                 f"slots{f' and at most {high + 1}' if high is not None else ''}")
            values[size_symbol(CAPACITY)] = capacity
        return values

    def evaluate(self, **sizes: int) -> dict[str, int | float]:
        """Each generation metric at concrete sizes (b, n, T; C for a static cache), exactly."""
        values = self.symbol_values(sizes)
        return {m: as_number(evaluate_sums(f.expr, values)) for m, f in self.generation.items()}

    def evaluate_static(self, **sizes: int) -> dict[str, dict]:
        """With a static cache: {"static": ..., "waste": ...} per metric at concrete sizes."""
        values = self.symbol_values(sizes)
        return {part: {m: as_number(evaluate_sums(f.expr, values)) for m, f in getattr(self, part).items()}
                for part in ("static", "waste")}

    def to_dict(self, at: Mapping[str, int] | None = None) -> dict:
        from depthscope.report.generate import generation_dict

        return generation_dict(self, at)


def generation_specs(spec) -> GenerationSpecs:
    """The prefill and decode-step specs of a loaded model file: its own protocol, else a transformers causal LM."""
    if has_protocol(spec.namespace):
        return protocol_specs(spec)
    if is_transformers_model(spec.model):
        return hf_specs(spec)
    where = spec.source or spec.name
    raise InputError(f"{where}: --generate needs a decoder-only language model: a transformers causal LM built from "
                     "its config (GPT2LMHeadModel, LlamaForCausalLM, ...) or a model file that defines "
                     f"decode_step(model, token, cache) and make_cache(batch, length) (docs/model-files.md); "
                     f"{type(spec.model).__name__} is neither")


def _from_transformers(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if "/transformers/" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            return True
        tb = tb.tb_next
    return False


def _analyze(spec, what: str, engine: str, rules, on_fallback) -> Analysis:
    try:
        return analyze_subject(Subject(spec), rules=rules, engine=engine, on_fallback=on_fallback)
    except DepthscopeError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers failing inside the wrapper is the model's, not ours
        if not _from_transformers(exc):
            raise
        raise CaptureError(f"{spec.source or spec.name}: transformers raised {type(exc).__name__} while exporting the "
                           f"{what}: {exception_text(exc)}") from exc


def _analyze_step(specs: GenerationSpecs, engine: str, rules, on_fallback):
    """(spec, Analysis) of the decode step, symbolic first; a sliding window's bound on c (torch's suggested fix)
    is applied once."""
    if engine == "fitted":
        return specs.step, _analyze(specs.step, "decode step", engine, rules, on_fallback)
    try:
        return specs.step, _analyze(specs.step, "decode step", "symbolic", rules, on_fallback)
    except ShapeConstraintError as exc:
        bound = suggested_cache_max(str(exc))
        if bound is not None and specs.retry_cache_max is not None and bound >= 2:
            spec = specs.retry_cache_max(bound)
            return spec, _analyze(spec, "decode step", engine, rules, on_fallback)
        if engine == "symbolic":
            raise
    return specs.step, _analyze(specs.step, "decode step", "auto", rules, on_fallback)


class PartsAt:
    """sizes -> (prefill, step, notes): each part through pipeline.analysis_at, so sizes below a Dim's min (b=1)
    are counted exactly by a concrete capture with that Dim fixed; `rebuild` makes the Generation of two parts."""

    def __init__(self, model: str, parts, specs: GenerationSpecs, engine: str, rules, on_fallback):
        self.model, self.parts, self.specs = model, parts, specs  # parts: ((Subject, Analysis), (Subject, Analysis))
        self.options = {"engine": engine, "rules": rules, "on_fallback": on_fallback}

    def __call__(self, sizes: dict):
        out, said = [], []
        with self.specs.context():
            for subject, analysis in self.parts:
                own = {k: v for k, v in sizes.items() if k in analysis.symbols}
                other, text = analysis_at(subject, analysis, own, **self.options)
                out.append(other)
                if text and text not in said:
                    said.append(text)
        return out[0], out[1], tuple(said)

    def rebuild(self, prefill: Analysis, step: Analysis) -> "Generation":
        return build_generation(self.model, prefill, step, self.specs)


def generation_analysis(subject, *, engine: str = "auto", rules: dict | None = None,
                        on_fallback: Callable[[str], None] | None = None) -> Generation:
    """Analyze a model file (path or loaded Subject) for generation: prefill, decode step, T new tokens."""
    if isinstance(subject, str):
        subject = load_subject(subject)
    if subject.hyper:
        raise InputError(f"{subject.name}: --generate does not take symbolic hyperparameters "
                         f"({', '.join(subject.hyper)}); give them values")
    specs = generation_specs(subject.spec)
    with specs.context():
        prefill = _analyze(specs.prefill, "prefill", engine, rules, on_fallback)
        step_spec, step = _analyze_step(specs, engine, rules, on_fallback)
    parts = ((Subject(specs.prefill), prefill), (Subject(step_spec), step))
    at = PartsAt(subject.spec.name, parts, specs, engine, rules, on_fallback)
    return replace(build_generation(subject.spec.name, prefill, step, specs), parts_at=at)


def build_generation(model: str, prefill: Analysis, step: Analysis, specs: GenerationSpecs) -> Generation:
    """The generation formulas from the two analyses (exact sums over the decode steps, big-O of each)."""
    extra = sorted(set(step.symbols) - set(prefill.symbols) - {CACHE_LENGTH})
    if extra:
        raise InputError(f"{model}: the decode step has sizes the prefill does not ({', '.join(extra)}); the step's "
                         "inputs may only vary with the prompt's batch and the cache length")
    n = size_symbol(specs.prompt_length) if isinstance(specs.prompt_length, str) else sympy.Integer(specs.prompt_length)
    c, tokens = size_symbol(CACHE_LENGTH), size_symbol(NEW_TOKENS)
    info = step.symbols.get(CACHE_LENGTH)
    c_range = (info.min, info.max) if info is not None else (2, None)
    mins = {s.symbol: s.min for s in prefill.symbols.values()}
    mins[tokens] = 1
    symbols = dict(prefill.symbols)
    symbols[NEW_TOKENS] = SymbolInfo(NEW_TOKENS, 1, None)
    generation, sums, static, waste = {}, {}, None, None
    names = [m for m in METRICS if hasattr(prefill, m) and hasattr(step, m)]
    for name in names:
        first, each = getattr(prefill, name), getattr(step, name)
        sums[name] = summed = sum_steps(each, c, n, n + tokens - 2, mins, c_range)
        generation[name] = Metric(prefill_plus(first, summed.expr), summed_big_o(first, each, c, n, tokens),
                                  summed.closed, summed.reason)
    if specs.static_cache:  # every step attends over all C slots: step(c = C - 1), T - 1 times
        capacity = size_symbol(CAPACITY)
        symbols[CAPACITY] = SymbolInfo(CAPACITY, 2, c_range[1] + 1 if c_range[1] is not None else None)
        static, waste = {}, {}
        for name in names:
            first, each = getattr(prefill, name), getattr(step, name)
            full = sympy.expand((tokens - 1) * each.xreplace({c: capacity - 1}))
            static[name] = Metric(prefill_plus(first, full), summed_big_o(first, each, c, capacity, tokens))
            waste[name] = Metric(full - sums[name].expr, summed_big_o(0, each, c, capacity, tokens),
                                 sums[name].closed, sums[name].reason)
    launches = sum(1 for node in step.nodes if node.status != "free")
    return Generation(model, prefill, step, MappingProxyType(generation), MappingProxyType(symbols), n, launches,
                      specs.capture, specs.cache_bytes, specs.weight_bytes,
                      MappingProxyType(static) if static is not None else None,
                      MappingProxyType(waste) if waste is not None else None)


def prefill_plus(first, summed) -> sympy.Expr:
    """prefill + the steps' sum, expanded where that keeps the form readable (no Sum or Max inside)."""
    total = first + summed
    return total if total.has(sympy.Sum, sympy.Max) else sympy.expand(total)


__all__ = ["Generation", "METRICS", "Metric", "build_generation", "generation_analysis", "generation_specs"]
