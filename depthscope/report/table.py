"""Terminal renderer: summary, modules, ops and the critical path as plain tables."""

from __future__ import annotations

from tabulate import tabulate

from depthscope.complexity import big_o
from depthscope.report.common import display_sizes, human, provenance_line, share, sizes_label, top_level_modules, value_at
from depthscope.symbols import fmt

PATH_HEAD = 12  # a long critical path shows its first and last steps
FUSED_LABEL = "bytes fused (estimate)"


def io_label(report) -> str:
    """The I/O row's name: against which fast memory, and that it is the tiled algorithms' bound."""
    where = f"M = {report.fast_memory} B" if report.fast_memory else "M bytes of fast memory"
    return f"I/O, {where} (tiled bound)"


def intensity(summary) -> list[str]:
    """FLOPs per byte and work per byte of an op or module summary at the view's sizes ("-" for none)."""
    return [(f"{x:.3g}" if x < 1000 else f"{x:.0f}") if x else "-" for x in (summary.flops_per_byte, summary.work_per_byte)]


def sections(report, at: dict[str, int] | None, tablefmt: str) -> list[tuple[str, str]]:
    """(title, table) pairs shared by the terminal and Markdown renderers."""
    sizes = display_sizes(report, at)
    label = sizes_label(sizes)
    bo = report.big_o
    out = []

    summary_head = ["", "exact", "big-O"] + ([f"at {label}"] if at else [])
    values = report.evaluate(**at) if at else {}
    rows = []
    for key, metric, expr, cls in (
        ("work", "work", report.work, bo["work"]),
        ("depth", "depth", report.depth, bo["depth"]),
        ("parallelism W/D", "parallelism", report.parallelism, bo["parallelism"]),
        ("matmul FLOPs", "flops", report.flops, big_o(report.flops)),
        ("bytes (unfused)", "bytes", report.bytes, bo["bytes"]),
        (FUSED_LABEL, "bytes_fused", report.bytes_fused, bo["bytes_fused"]),
        (io_label(report), "io", report.io, bo["io"]),
    ):
        row = [key, fmt(expr), f"O({fmt(cls)})"]
        if at:
            value = values.get(metric)
            row.append(human(value) if value is not None else "(give --fast-memory)")
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
    total_bytes = value_at(report.bytes, report, sizes) or 0.0
    mod_rows = []
    for m in sorted(top_level_modules(report.modules(sizes)), key=lambda m: -value_at(m.work, report, sizes)):
        w = value_at(m.work, report, sizes)
        d = value_at(m.depth, report, sizes)
        work_col = f"O({fmt(big_o(m.work))})" if m.work.free_symbols else human(w)
        mod_rows.append([m.path or "(root)", m.type, work_col, share(w, total_work), share(d, total_depth),
                         share(value_at(m.bytes, report, sizes), total_bytes), *intensity(m)])
    out.append((f"modules (shares at {label})", tabulate(mod_rows, ["module", "type", "work", "work share", "depth share",
                                                                   "bytes share", "FLOP/B", "work/B"],
                                                          tablefmt=tablefmt)))

    op_rows = []
    free_count = 0
    for o in report.ops(sizes):
        if o.status == "free":
            free_count += o.count
            continue
        w = value_at(o.work, report, sizes)
        d = value_at(o.depth, report, sizes)
        mark = " (unmodeled)" if o.status == "unmodeled" else ""
        op_rows.append([o.op + mark, o.count, fmt(o.work), share(w, total_work), share(d, total_depth),
                        share(value_at(o.bytes, report, sizes), total_bytes), *intensity(o)])
    if free_count:
        op_rows.append(["views, metadata, shape arithmetic", free_count, "0", "0.0%", "0.0%", "0.0%", "-", "-"])
    out.append((f"ops (shares at {label})", tabulate(op_rows, ["op", "count", "work", "work share", "depth share",
                                                              "bytes share", "FLOP/B", "work/B"],
                                                      tablefmt=tablefmt)))

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


def bytes_note(report) -> str:
    """What the byte rows are, in one line."""
    return ("NOTE: bytes = every op's tensors read and written, unfused; bytes fused is an ESTIMATE (pointwise ops and "
            "reductions fused into their neighbours, as Inductor would); I/O is an upper bound from tiled matmul and "
            "FlashAttention (docs/cost-model.md)")


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
    for note in (bytes_note(report), unknowns_note(report), unmodeled_warning(report)):
        if note:
            parts.append(note)
    return "\n\n".join(parts) + "\n"
