"""`predict --generate`: time to first token, time per output token and total time for T tokens on a device.

Each part's time is the roofline with depth and launches of depthscope.predict.roofline, on one stream:
T = sum_i max(w_i/P_f, q_i/B) + D*t + K*o over the part's ops. The prefill's T at (b, n) is the time to first
token; the decode step's T at (b, c) the time per output token; T new tokens take TTFT + the sum of the step's T
over c = n, ..., n + T - 2 (generate's convention, depthscope.generate.analysis), each step evaluated numerically
at its own c. The regime over b is the decode step's bound at each b with c held (depthscope.predict.regimes).
"""

from __future__ import annotations

from depthscope.errors import InputError
from depthscope.generate.specs import CACHE_LENGTH, NEW_TOKENS
from depthscope.predict.regimes import SEARCH_CAP, changes_clause, regime_changes
from depthscope.predict.roofline import LABELS, NodeTable, bound_of, model_parts, roofline_point
from depthscope.predict.units import seconds, size_bytes

SCHEMA = "depthscope.predict-generate/1"
TOTAL_METHOD = ("numerically per step: TTFT + the decode step's roofline T at each c = n, ..., n + T - 2 "
                "(the max per op has no closed-form sum)")


class StepTables:
    """The decode step's NodeTable at each b: the symbolic analysis's in its range, a concrete capture's below."""

    def __init__(self, gen, profile):
        self.gen, self.profile, self.tables = gen, profile, {}

    def __call__(self, sizes: dict) -> NodeTable:
        step = self.gen.at(sizes).decode_step
        if id(step) not in self.tables:
            self.tables[id(step)] = (step, NodeTable(step, self.profile))
        return self.tables[id(step)][1]


def part_sizes(analysis, sizes: dict) -> dict:
    return {k: v for k, v in sizes.items() if k in analysis.symbols}


def part_time(table: NodeTable, sizes: dict) -> dict:
    """The part's roofline point at `sizes` without its per-op rows (the four parts, T, bound, work, bytes)."""
    point = roofline_point(table, part_sizes(table.report, sizes))
    point.pop("ops")
    return point


def step_times(tables: StepTables, sizes: dict, first: int, last: int) -> list[float]:
    """The decode step's one-stream T at every c in [first, last] (b held)."""
    out = []
    for c in range(first, last + 1):
        at = {**sizes, CACHE_LENGTH: c}
        parts = model_parts(tables(at), part_sizes(tables(at).report, at))
        out.append(sum(parts[label] for label in LABELS))
    return out


def batch_regime(tables: StepTables, sizes: dict, batch: str) -> dict:
    """The decode step's bound over b with c held: the label at b's lowest size and each change."""
    info = tables.gen.decode_step.symbols[batch]
    lo = 1  # b=1 and any b below the export's min come from a concrete capture (StepTables)
    hi = info.max if info.max is not None else SEARCH_CAP
    held = {CACHE_LENGTH: sizes[CACHE_LENGTH]}

    def label(x: int) -> str:
        at = {**held, batch: x}
        return bound_of(model_parts(tables(at), part_sizes(tables(at).report, at)))

    first, changes = regime_changes(label, lo, hi)
    return {"symbol": batch, "held": held, "range": [lo, hi], "first": first,
            "changes": [{"at": at, "bound": name} for at, name in changes],
            "clause": changes_clause(batch, first, changes, lo, hi, info.max is None)}


def complete(gen, sizes: dict, defaults: dict) -> tuple[dict, list[str]]:
    """The prompt's sizes from the example inputs where not given, c = n unless given; T must be given."""
    sizes, filled = dict(sizes), []
    for name in gen.prefill.symbols:
        if name not in sizes and name in defaults:
            sizes[name] = defaults[name]
            filled.append(name)
    if NEW_TOKENS not in sizes:
        raise InputError(f"predict --generate: give the number of new tokens, e.g. --at {NEW_TOKENS}=256")
    if CACHE_LENGTH not in sizes and CACHE_LENGTH in gen.decode_step.symbols:
        free = gen.prompt_length.free_symbols  # n's symbol (or none: a static prompt length)
        if any(str(s) not in sizes for s in free):
            raise InputError(f"predict --generate: give the prompt length, e.g. --at {gen.prompt_length}=128")
        sizes[CACHE_LENGTH] = int(gen.prompt_length.subs({s: sizes[str(s)] for s in free}))
    return sizes, filled


def predict_generation(gen, profile, sizes: dict) -> dict:
    """TTFT, time per output token at c, total time for T tokens and the decode regime over b, at `sizes`."""
    if not profile.memory_bandwidth:
        raise InputError(f"predict --generate: profile {profile.name} has no memory_bandwidth, so there is no roofline")
    known = set(gen.symbols) | set(gen.decode_step.symbols)
    unknown = sorted(set(sizes) - known)
    if unknown:
        raise InputError(f"unknown size symbol {unknown[0]!r}; the generation's symbols are: {', '.join(sorted(known))}")
    sizes, _ = complete(gen, sizes, {})  # c = n unless given
    here = gen.at(sizes)  # below a Dim's min (b=1): concrete captures (pipeline.analysis_at)
    here.symbol_values({k: v for k, v in sizes.items() if k in here.symbols})
    here.decode_step.symbol_values(part_sizes(here.decode_step, sizes))
    tables = StepTables(gen, profile)
    prefill = part_time(NodeTable(here.prefill, profile), sizes)
    step = part_time(tables(sizes), sizes)
    n = int(here.prompt_length.subs({s: sizes[str(s)] for s in here.prompt_length.free_symbols}))
    tokens = sizes[NEW_TOKENS]
    steps = step_times(tables, sizes, n, n + tokens - 2)
    values = here.decode_step.symbol_values(part_sizes(here.decode_step, sizes))
    per_token = {"weight_bytes": here.weight_bytes,
                 "kv_cache_bytes": int(here.kv_cache_bytes.subs(values)),
                 "bytes": int(here.bytes_per_token.subs(values))}
    batch = next((name for name in gen.decode_step.symbols if name != CACHE_LENGTH), None)
    regime = batch_regime(tables, sizes, batch) if batch is not None else None
    total = prefill["predicted_s"] + sum(steps)
    out = {"sizes": dict(sizes), "prompt_length": n, "new_tokens": tokens,
           "ttft_s": prefill["predicted_s"], "time_per_token_s": step["predicted_s"], "total_s": total,
           "total_method": TOTAL_METHOD, "decode_steps": len(steps),
           "step_s": {"first": steps[0] if steps else None, "last": steps[-1] if steps else None,
                      "mean": sum(steps) / len(steps) if steps else None},
           "prefill": prefill, "decode_step": step, "per_token": per_token, "batch_regime": regime,
           "notes": list(here.notes), "exactness": here.exactness,
           "reasons": list(dict.fromkeys([*here.prefill.provenance.reasons, *here.decode_step.provenance.reasons]))}
    out["sentence"] = sentence(out, batch)
    return {"schema": SCHEMA, "model": gen.model, "profile": profile.to_dict(), "generate": out}


def sentence(out: dict, batch: str | None) -> str:
    """'decode at b=1 (c=128) is memory-bound: 1.9 ms per token reading 3.2 GB ...; over b: ...'."""
    sizes, step, per = out["sizes"], out["decode_step"], out["per_token"]
    where = ", ".join(f"{k}={sizes[k]}" for k in (batch, CACHE_LENGTH) if k in sizes)
    text = (f"decode at {where} is {step['bound']}-bound: {seconds(step['predicted_s'])} per token reading at least "
            f"{size_bytes(per['bytes'])} (weights {size_bytes(per['weight_bytes'])}, KV cache "
            f"{size_bytes(per['kv_cache_bytes'])}; {size_bytes(step['bytes'])} moved unfused)")
    if out["batch_regime"] is not None:
        text += f"; over {batch} (c={sizes[CACHE_LENGTH]} held): {out['batch_regime']['clause']}"
    return text
