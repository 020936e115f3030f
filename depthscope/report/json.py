"""JSON renderer: the stable, versioned `depthscope.report/3` schema (docs/json-schema.md)."""

from __future__ import annotations

import json

from depthscope.complexity import big_o
from depthscope.symbols import fmt

SCHEMA = "depthscope.report/3"
LABELS = {"bytes": "exact: every op's tensors read and written, unfused",
          "bytes_fused": "estimate: pointwise ops and reductions fused into their neighbours (docs/cost-model.md)",
          "io": "upper bound: tiled matmul/convolution and FlashAttention against a fast memory of M bytes"}


def _metric(expr) -> dict:
    return {"expr": fmt(expr), "big_o": fmt(big_o(expr))}


def _steps(path) -> list:
    return [{"node": s.node, "op": s.op, "module": s.module, "depth": fmt(s.depth)} for s in path.steps]


def _traffic(summary) -> dict:
    """An op's or module's FLOPs, bytes and I/O (formulas) and its intensities at `views_at`."""
    return {"flops": fmt(summary.flops), "bytes": fmt(summary.bytes), "io": fmt(summary.io),
            "flops_per_byte": summary.flops_per_byte, "work_per_byte": summary.work_per_byte}


def report_dict(report, at: dict[str, int] | None = None) -> dict:
    """The whole Analysis as JSON; ops, modules and the critical path are those at `at` (else the display sizes)."""
    sizes = report.view_sizes(at)
    bo = report.big_o
    out = {
        "schema": SCHEMA,
        "model": report.model,
        "engine": report.engine,
        "mode": report.mode,
        "exactness": report.exactness,
        "provenance": report.provenance.to_dict(),
        "symbols": {name: {"min": s.min, "max": s.max} for name, s in report.symbols.items()},
        "work": _metric(report.work),
        "depth": _metric(report.depth),
        "parallelism": {"expr": fmt(report.parallelism), "big_o": fmt(bo["parallelism"])},
        "flops": _metric(report.flops),
        "bytes": _metric(report.bytes),
        "bytes_fused": _metric(report.bytes_fused),
        "io": _metric(report.io),
        "fast_memory": report.fast_memory,
        "bytes_labels": dict(LABELS),
        "node_count": report.node_count,
        "views_at": sizes,
        "ops": [dict({"op": o.op, "count": o.count, "work": fmt(o.work), "depth": fmt(o.depth), "status": o.status},
                     **_traffic(o)) for o in report.ops(sizes)],
        "modules": [dict({"path": m.path, "type": m.type, "work": fmt(m.work), "depth": fmt(m.depth)}, **_traffic(m))
                    for m in report.modules(sizes)],
        "critical_path": _steps(report.critical_path(sizes)),
        "critical_paths": [{"depth": fmt(p.depth), "steps": len(p.steps)} for p in report.paths],
        "unmodeled": [{"op": op, "count": count} for op, count in report.unmodeled],
        "unknowns": [{"symbol": sym, "what": what} for sym, what in report.unknowns],
    }
    if report.fit is not None:
        out["fit"] = dict(report.fit.to_dict(), breakdown_at=report.breakdown_at)
    if at:
        out["at"] = dict(at)
        out["values"] = report.evaluate(**at)
    return out


def render(report, at: dict[str, int] | None = None) -> str:
    return json.dumps(report_dict(report, at), indent=2)
