"""Text for `predict --generate` results: table, markdown and json (docs/predict-and-validate.md)."""

from __future__ import annotations

import json

from depthscope.predict.render import profile_line
from depthscope.predict.units import number, seconds, size_bytes


def _rows(gen: dict) -> list[list[str]]:
    """One row per part: the roofline's four parts, T and the bound."""
    rows = []
    for label, part in (("prefill (time to first token)", gen["prefill"]),
                        ("decode step (time per output token)", gen["decode_step"])):
        rows.append([label, number(part["work"]), size_bytes(part["bytes"]), seconds(part["compute_s"]),
                     seconds(part["memory_s"]), seconds(part["depth_s"]), f"{part['launches']:,}",
                     seconds(part["launch_s"]), seconds(part["predicted_s"]), part["bound"]])
    return rows


def sections(result: dict, tablefmt: str) -> list[tuple[str, str]]:
    from tabulate import tabulate

    gen = result["generate"]
    label = ", ".join(f"{k}={v}" for k, v in gen["sizes"].items())
    if gen["notes"]:  # below a Dim's min: a concrete capture counted those parts (pipeline.analysis_at)
        label += " (concrete capture)"
    head = ["part", "work W", "bytes Q", "compute-bound ops", "memory-bound ops", "D*t", "launches K", "K*o",
            "T", "bound"]
    steps = gen["step_s"]
    times = [["time to first token (TTFT)", seconds(gen["ttft_s"])],
             [f"time per output token at c={gen['sizes'].get('c')}", seconds(gen["time_per_token_s"])],
             [f"total for T={gen['new_tokens']} tokens", seconds(gen["total_s"])],
             ["  of which decode steps", f"{gen['decode_steps']:,} (c = {gen['prompt_length']:,} .. "
                                         f"{gen['prompt_length'] + gen['new_tokens'] - 2:,}), "
                                         f"{seconds(steps['first'])} .. {seconds(steps['last'])} each"
              if gen["decode_steps"] else "none (T=1: the prefill's token only)"]]
    out = [(f"{result['model']} generation on {result['profile']['name']} at {label} (work, bytes and depth "
            f"{gen['exactness']}): "
            "one-stream roofline T = sum of max(w/peak, q/bandwidth) per op + D*t + K*o",
            tabulate(_rows(gen), head, tablefmt=tablefmt, disable_numparse=True)),
           (f"generation times (total: {gen['total_method']})",
            tabulate(times, ["", "predicted"], tablefmt=tablefmt, disable_numparse=True))]
    if gen["exactness"] == "approximate":  # unmodeled ops or a failed fit behind the times
        out.append(("WARNING: the work and depth behind these times are approximate",
                    "\n".join(gen["reasons"]) or "see depthscope analyze --generate"))
    return out


def lines(result: dict) -> list[str]:
    gen = result["generate"]
    return [f"regime: {gen['sentence']}."]  # the notes (concrete captures) go to stderr, as predict's do


def render(result: dict, fmt: str) -> str:
    """A `predict --generate` result as table, markdown or json text."""
    if fmt == "json":
        return json.dumps(result, indent=2) + "\n"
    if fmt == "markdown":
        parts = [f"# depthscope generation prediction: {result['model']} on {result['profile']['name']}",
                 profile_line(result["profile"])]
        parts += [f"## {title}\n\n{table}" for title, table in sections(result, "github")]
        parts.append("\n".join(f"- {line}" for line in lines(result)))
        return "\n\n".join(parts) + "\n"
    parts = [profile_line(result["profile"])] + [f"{t}\n{table}" for t, table in sections(result, "simple")]
    return "\n\n".join(parts + ["\n".join(lines(result))]) + "\n"
