"""Renderers for a generation analysis: prefill, decode step and T new tokens (table, Markdown, JSON)."""

from __future__ import annotations

import json

import sympy
from tabulate import tabulate

from depthscope.complexity import big_o
from depthscope.engine.analysis import as_number
from depthscope.errors import InputError
from depthscope.report.common import human, provenance_line, sizes_label
from depthscope.report.json import report_dict
from depthscope.symbols import evaluate, fmt

LABELS = {"work": "work", "depth": "depth", "flops": "matmul FLOPs", "bytes": "bytes (unfused)"}
CONVENTION = ("T new tokens as generate(max_new_tokens=T) makes them: the prefill gives the first, T - 1 decode "
              "steps at c = n, ..., n + T - 2 the rest; work, FLOPs and bytes add, and so does depth, since each "
              "step waits for the previous token")
BIG_O_NOTE = ("big-O of a sum over the steps: that of prefill + T * step(c = n + T), within constant factors for "
              "step costs that do not fall as c grows")


def _part_sizes(symbols, at: dict | None) -> dict | None:
    """`at` restricted to a part's symbols, when it gives them all (else None: no value column)."""
    if not at:
        return None
    sizes = {k: v for k, v in at.items() if k in symbols}
    return sizes if len(sizes) == len(symbols) else None


def check_sizes(gen, at: dict | None) -> None:
    """Every --at name is a size of some part; every part given all its sizes is in range."""
    if not at:
        return
    known = set(gen.symbols) | set(gen.prefill.symbols) | set(gen.decode_step.symbols)
    unknown = [k for k in at if k not in known]
    if unknown:
        raise InputError(f"unknown size symbol {unknown[0]!r}; the generation's symbols are: "
                         f"{', '.join(sorted(known))}")
    for analysis in (gen.prefill, gen.decode_step):
        sizes = _part_sizes(analysis.symbols, at)
        if sizes is not None:
            analysis.evaluate(**sizes)
    sizes = _part_sizes(gen.symbols, at)
    if sizes is not None:
        gen.symbol_values(sizes)


def _analysis_metrics(analysis, metrics) -> dict:
    return {m: getattr(analysis, m) for m in metrics}


def _values(gen, at: dict | None) -> dict:
    """{part: values or None} at `at`."""
    out = {}
    for key, analysis in (("prefill", gen.prefill), ("decode_step", gen.decode_step)):
        sizes = _part_sizes(analysis.symbols, at)
        if sizes is None:
            out[key] = None
            continue
        values = analysis.evaluate(**sizes)
        for m in gen.metrics:
            if m not in values:
                values[m] = as_number(evaluate(getattr(analysis, m), analysis.symbol_values(sizes)))
        out[key] = values
    sizes = _part_sizes(gen.symbols, at)
    out["generation"] = gen.evaluate(**sizes) if sizes is not None else None
    out["static_cache"] = gen.evaluate_static(**sizes) if sizes is not None and gen.static is not None else None
    return out


def _rows(exprs: dict, bigs: dict, values: dict | None, parallelism: bool = True) -> list:
    rows = []
    for m, expr in exprs.items():
        row = [LABELS.get(m, m), fmt(expr), f"O({fmt(bigs[m])})"]
        if values is not None:
            row.append(human(values[m]))
        rows.append(row)
    if parallelism and "work" in exprs and "depth" in exprs:  # how many processors the part keeps busy
        row = ["parallelism W/D", "work / depth", f"O({fmt(bigs['work'] / bigs['depth'])})"]
        if values is not None:
            row.append(human(values["work"] / values["depth"]) if values["depth"] else "-")
        rows.append(row)
    return rows


def per_token(gen) -> dict:
    """What one decode step must read at least, and its ops: {name: expression} in b and c."""
    return {"weights read once (bytes)": sympy.Integer(gen.weight_bytes),
            "KV cache read (bytes)": gen.kv_cache_bytes,
            "bytes per token (weights + KV cache)": gen.bytes_per_token,
            "ops per token (one kernel each, unfused)": sympy.Integer(gen.launches_per_token)}


def _per_token_rows(gen, sizes: dict | None) -> list:
    rows = []
    values = gen.decode_step.symbol_values(sizes) if sizes is not None else None
    for label, expr in per_token(gen).items():
        row = [label, fmt(expr), f"O({fmt(big_o(expr))})" if expr.free_symbols else ""]
        if values is not None:
            row.append(human(as_number(evaluate(expr, values))))
        rows.append(row)
    return rows


def sections(gen, at: dict | None, tablefmt: str) -> list[tuple[str, str]]:
    """(title, table) pairs: prefill, decode step, generation (and the static cache's, when it has one)."""
    check_sizes(gen, at)
    values = _values(gen, at)
    out = []
    for key, analysis, title in (
        ("prefill", gen.prefill, "prefill of the prompt (writes the cache, picks the first token)"),
        ("decode_step", gen.decode_step, "decode step: one token with c past tokens in the KV cache"),
    ):
        exprs = _analysis_metrics(analysis, gen.metrics)
        sizes = _part_sizes(analysis.symbols, at)
        head = ["", "exact", "big-O"] + ([f"at {sizes_label(sizes)}"] if sizes is not None else [])
        rows = _rows(exprs, {m: big_o(e) for m, e in exprs.items()}, values[key])
        if key == "decode_step":
            rows += _per_token_rows(gen, sizes)
        name = f"{title}\n{provenance_line(analysis)}, engine {analysis.engine}"
        out.append((name, tabulate(rows, head, tablefmt=tablefmt, disable_numparse=True)))
    sizes = _part_sizes(gen.symbols, at)
    head = ["", "exact", "big-O"] + ([f"at {sizes_label(sizes)}"] if sizes is not None else [])
    exprs = {m: f.expr for m, f in gen.generation.items()}
    rows = _rows(exprs, {m: f.big_o for m, f in gen.generation.items()}, values["generation"])
    result = {"exact": "result: exact", "fitted-exact": "result: fitted-exact (from the parts above)",
              "approximate": "result: APPROXIMATE (a part above is approximate)"}[gen.exactness]
    if any(not f.closed for f in gen.generation.values()):
        result += ", partly a sympy Sum (see the notes)"
    out.append((f"generation of T new tokens\n{result}; {CONVENTION}", tabulate(rows, head, tablefmt=tablefmt,
                                                                      disable_numparse=True)))
    if gen.static is not None:
        static = values["static_cache"]
        rows = _rows({m: f.expr for m, f in gen.static.items()}, {m: f.big_o for m, f in gen.static.items()},
                     static["static"] if static else None)
        rows += [[f"padding waste: {r[0]}", *r[1:]] for r in _rows(
            {m: f.expr for m, f in gen.waste.items()}, {m: f.big_o for m, f in gen.waste.items()},
            static["waste"] if static else None, parallelism=False)]
        out.append(("with the model's static cache of C slots: every decode step attends over all C (step(c = C - 1) "
                    "each; generate allocates C = n + T)", tabulate(rows, head, tablefmt=tablefmt,
                                                                    disable_numparse=True)))
    return out


def notes(gen) -> list[str]:
    out = [f"NOTE: {BIG_O_NOTE}.", f"NOTE: capture: {gen.capture}."]
    out += [f"NOTE: {m}: {f.reason}." for m, f in gen.generation.items() if f.reason]
    return out


def render_table(gen, at: dict | None = None, tablefmt: str = "simple") -> str:
    head = f"{gen.model}: generation (prefill, decode step with a KV cache, T new tokens)"
    parts = [head] + [f"{title}\n{table}" for title, table in sections(gen, at, tablefmt)] + notes(gen)
    return "\n\n".join(parts) + "\n"


def render_markdown(gen, at: dict | None = None) -> str:
    parts = [f"# depthscope generation report: {gen.model}"]
    for title, table in sections(gen, at, "github"):
        heading, _, note = title.partition("\n")
        parts.append(f"## {heading}\n\n" + (f"**{note}**\n\n" if note else "") + table)
    parts += [f"> {line}" for line in notes(gen)]
    return "\n\n".join(parts) + "\n"


def _metric(expr, cls) -> dict:
    return {"expr": fmt(expr), "big_o": fmt(cls)}


def _symbols(symbols) -> dict:
    return {name: {"min": s.min, "max": s.max} for name, s in symbols.items()}


def generation_dict(gen, at: dict | None = None) -> dict:
    """The JSON `generate` section (docs/json-schema.md)."""
    check_sizes(gen, at)
    values = _values(gen, at)
    out = {"convention": CONVENTION, "big_o_of_sums": BIG_O_NOTE, "capture": gen.capture,
           "cache": "static" if gen.static is not None else "dynamic", "exactness": gen.exactness}
    for key, analysis in (("prefill", gen.prefill), ("decode_step", gen.decode_step)):
        part = {"symbols": _symbols(analysis.symbols), "engine": analysis.engine, "exactness": analysis.exactness,
                "reasons": list(analysis.provenance.reasons)}
        part.update({m: _metric(getattr(analysis, m), big_o(getattr(analysis, m))) for m in gen.metrics})
        if values[key] is not None:
            part["values"] = {m: values[key][m] for m in gen.metrics}
        out[key] = part
    out["decode_step"]["ops_per_token"] = gen.launches_per_token
    out["decode_step"]["per_token"] = {
        "weight_bytes": gen.weight_bytes, "kv_cache_bytes": _metric(gen.kv_cache_bytes, big_o(gen.kv_cache_bytes)),
        "bytes": _metric(gen.bytes_per_token, big_o(gen.bytes_per_token))}
    part = {"symbols": _symbols(gen.symbols)}
    for m, f in gen.generation.items():
        part[m] = dict(_metric(f.expr, f.big_o), closed=f.closed, **({"reason": f.reason} if f.reason else {}))
    if values["generation"] is not None:
        part["values"] = values["generation"]
    out["generation"] = part
    if gen.static is not None:
        static = {"static": {m: _metric(f.expr, f.big_o) for m, f in gen.static.items()},
                  "waste": {m: _metric(f.expr, f.big_o) for m, f in gen.waste.items()}}
        if values["static_cache"] is not None:
            static["values"] = values["static_cache"]
        out["static_cache"] = static
    else:
        out["static_cache"] = None
    return out


def render_json(gen, at: dict | None = None) -> str:
    """The prefill's report (as `analyze --format json`) with the `generate` section added."""
    out = report_dict(gen.prefill, _part_sizes(gen.prefill.symbols, at))
    out["generate"] = generation_dict(gen, at)
    return json.dumps(out, indent=2)


RENDERERS = {"table": render_table, "markdown": render_markdown, "json": render_json}


def render(gen, fmt_name: str, at: dict | None = None) -> str:
    return RENDERERS[fmt_name](gen, at)


__all__ = ["BIG_O_NOTE", "CONVENTION", "RENDERERS", "check_sizes", "generation_dict", "render", "sections"]
