"""What `depthscope check` needs from an Analysis, as JSON: the analysis subprocess returns it, the cache stores it.

A summary holds each metric's (work, depth, bytes) big-O class (as terms) and exact formula, the critical path's
pieces grouped by module and op, and the heaviest ops by work and by bytes, each with its value at a reference size
so a breach can name its cause.
"""

from __future__ import annotations

from depthscope.config import GENERATE_METRICS, METRICS

CACHE_FORMAT = 4  # the shape of a summary and of the cache entry that stores it: bump when either changes
MAX_GROUPS = 24


def op_display(op: str) -> str:
    """aten.linear.default -> aten.linear: the overload does not help a reader."""
    parts = op.split(".")
    return ".".join(parts[:-1]) if len(parts) >= 3 else op


def summarize(report, fallback: str | None = None) -> dict:
    """The parts of a Report that `check` uses: classes, exact formulas, critical-path groups, heaviest ops."""
    from depthscope.complexity import class_of_expr
    from depthscope.symbols import as_expr

    sizes = report.view_sizes()  # the Analysis's display sizes: the pieces of the path are ranked there

    def value(expr) -> float:
        try:
            v = report.value(as_expr(expr), sizes)
        except (TypeError, ValueError, AttributeError, OverflowError):
            return 0.0
        return v if v == v else 0.0  # (NaN is no ranking)

    groups: dict[tuple[str, str], object] = {}
    for step in report.critical_path(sizes).steps:
        key = (step.module, op_display(step.op))
        groups[key] = groups.get(key, 0) + as_expr(step.depth)
    depth_groups = [{"module": m, "op": op, "class": class_of_expr(d).to_json(), "ref": value(d)}
                    for (m, op), d in groups.items()]
    depth_groups.sort(key=lambda g: (-g["ref"], g["module"], g["op"]))

    def heaviest(part: str) -> list:
        out = []
        for o in sorted(report.ops(sizes), key=lambda o: (-value(getattr(o, part)), o.op))[:8]:
            per_module: dict[str, object] = {}
            for node in report.nodes:
                if node.op == o.op:
                    per_module[node.module] = per_module.get(node.module, 0) + as_expr(getattr(node.cost, part))
            module = max(sorted(per_module), key=lambda m: value(per_module[m])) if per_module else ""
            out.append({"op": op_display(o.op), "module": module, "class": class_of_expr(getattr(o, part)).to_json(),
                        "ref": value(getattr(o, part))})
        return out

    out = {"format": CACHE_FORMAT, "model": report.model, "engine": report.engine, "mode": report.mode,
           "symbols": sorted(report.symbols), "fallback": fallback or report.provenance.fallback,
           "exactness": report.exactness, "reasons": list(report.provenance.reasons),
           "unmodeled": [[op, count] for op, count in report.unmodeled],
           "heldout_passed": report.fit.heldout_passed if report.fit is not None else None,
           "depth_groups": depth_groups[:MAX_GROUPS], "work_ops": heaviest("work"),
           "bytes_ops": heaviest("bytes")}
    for metric in METRICS:
        expr = getattr(report, metric)
        cls = class_of_expr(expr)
        out[metric] = {"class": cls.text(), "terms": cls.to_json(), "formula": str(expr)}
    return out


def summarize_generation(generation) -> dict:
    """The generation budgets' metrics (config.GENERATE_METRICS) of a generation analysis, as summarize's."""
    from depthscope.complexity import class_of_expr

    parts = {"prefill": generation.prefill, "decode": generation.decode_step}
    out = {}
    for metric in GENERATE_METRICS:
        part, name = metric.split("_")
        if part == "generate":
            formula = generation.generation[name]
            cls, text = class_of_expr(formula.big_o), str(formula.expr)
        else:
            expr = getattr(parts[part], name)
            cls, text = class_of_expr(expr), str(expr)
        out[metric] = {"class": cls.text(), "terms": cls.to_json(), "formula": text}
    return out


__all__ = ["CACHE_FORMAT", "MAX_GROUPS", "op_display", "summarize", "summarize_generation"]
