"""Terminal renderer: summary, modules, ops and the critical path as plain tables."""

from __future__ import annotations

from tabulate import tabulate

from depthscope.complexity import big_o
from depthscope.report.common import display_sizes, human, provenance_line, share, sizes_label, top_level_modules, value_at
from depthscope.symbols import fmt

PATH_HEAD = 12  # a long critical path shows its first and last steps


def sections(report, at: dict[str, int] | None, tablefmt: str) -> list[tuple[str, str]]:
    """(title, table) pairs shared by the terminal and Markdown renderers."""
    sizes = display_sizes(report, at)
    label = sizes_label(sizes)
    bo = report.big_o
    out = []

    summary_head = ["", "exact", "big-O"] + ([f"at {label}"] if at else [])
    values = report.evaluate(**at) if at else {}
    rows = []
    for key, expr, cls in (
        ("work", report.work, bo["work"]),
        ("depth", report.depth, bo["depth"]),
        ("parallelism W/D", report.parallelism, bo["parallelism"]),
        ("matmul FLOPs", report.flops, big_o(report.flops)),
    ):
        row = [key, fmt(expr), f"O({fmt(cls)})"]
        if at:
            metric = {"work": "work", "depth": "depth", "parallelism W/D": "parallelism", "matmul FLOPs": "flops"}[key]
            row.append(human(values[metric]))
        rows.append(row)
    mode = ", training step (forward + backward)" if report.mode == "train" else ""
    if report.fit is not None:
        check = "passed" if report.fit.heldout_passed else "FAILED"
        fitted_in = ", ".join(report.fit.fitted_in) or "nothing"
        mode += (f"; fitted in {fitted_in} over {len(report.fit.sizes)} points (exact at powers of two), "
                 f"held-out check {check}")
    title = f"{report.model}: {report.node_count} nodes, engine {report.engine}{mode}"
    out.append((f"{title}\n{provenance_line(report)}", tabulate(rows, summary_head, tablefmt=tablefmt)))

    if report.breakdown_at is not None:
        # fitted symbols: the breakdowns are those of one analysed build or size
        label = f"{sizes_label(dict(sizes, **report.breakdown_at))}; breakdowns of the analysed {sizes_label(report.breakdown_at)}"
    path = report.critical_path(sizes)
    total_work = value_at(report.work, report, sizes) or 0.0
    total_depth = value_at(path.depth, report, sizes) or 0.0  # the path shown is the longest here: shares add up
    mod_rows = []
    for m in sorted(top_level_modules(report.modules(sizes)), key=lambda m: -value_at(m.work, report, sizes)):
        w = value_at(m.work, report, sizes)
        d = value_at(m.depth, report, sizes)
        work_col = f"O({fmt(big_o(m.work))})" if m.work.free_symbols else human(w)
        mod_rows.append([m.path or "(root)", m.type, work_col, share(w, total_work), share(d, total_depth)])
    out.append((f"modules (shares at {label})", tabulate(mod_rows, ["module", "type", "work", "work share", "depth share"], tablefmt=tablefmt)))

    op_rows = []
    free_count = 0
    for o in report.ops(sizes):
        if o.status == "free":
            free_count += o.count
            continue
        w = value_at(o.work, report, sizes)
        d = value_at(o.depth, report, sizes)
        mark = " (unmodeled)" if o.status == "unmodeled" else ""
        op_rows.append([o.op + mark, o.count, fmt(o.work), share(w, total_work), share(d, total_depth)])
    if free_count:
        op_rows.append(["views, metadata, shape arithmetic", free_count, "0", "0.0%", "0.0%"])
    out.append((f"ops (shares at {label})", tabulate(op_rows, ["op", "count", "work", "work share", "depth share"], tablefmt=tablefmt)))

    steps = path.steps
    path_rows = []
    for i, s in enumerate(steps):
        if len(steps) > 2 * PATH_HEAD + 1 and PATH_HEAD <= i < len(steps) - PATH_HEAD:
            if i == PATH_HEAD:
                path_rows.append([f"... {len(steps) - 2 * PATH_HEAD} more steps ...", "", "", "", ""])
            continue
        d = value_at(s.depth, report, sizes)
        path_rows.append([s.node, s.op, s.module or "(root)", fmt(s.depth), share(d, total_depth)])
    out.append((f"critical path: {len(steps)} steps (depth shares at {label})",
                tabulate(path_rows, ["node", "op", "module", "depth", "share"], tablefmt=tablefmt)))
    return out


def unknowns_note(report) -> str | None:
    if not report.unknowns:
        return None
    return "NOTE: symbols that stand for quantities unknown before running: " + "; ".join(
        f"{sym} = {what}" for sym, what in report.unknowns)


def unmodeled_warning(report) -> str | None:
    if not report.unmodeled:
        return None
    listing = ", ".join(f"{op} x{count}" for op, count in report.unmodeled)
    return (f"WARNING: {sum(c for _, c in report.unmodeled)} node(s) have no cost rule and were counted at the default "
            f"(work = output elements, depth 1): {listing}")


def render(report, at: dict[str, int] | None = None) -> str:
    parts = []
    for title, table in sections(report, at, "simple"):
        parts.append(f"{title}\n{table}")
    for note in (unknowns_note(report), unmodeled_warning(report)):
        if note:
            parts.append(note)
    return "\n\n".join(parts) + "\n"
