"""Markdown renderer: the same sections as the terminal table, as GitHub tables."""

from __future__ import annotations

from depthscope.report.table import sections, unknowns_note, unmodeled_warning


def render(report, at: dict[str, int] | None = None) -> str:
    parts = [f"# depthscope report: {report.model}"]
    for title, table in sections(report, at, "github"):
        parts.append(f"## {title}\n\n{table}")
    for note in (unknowns_note(report), unmodeled_warning(report)):
        if note:
            parts.append(f"> **{note}**")
    return "\n\n".join(parts) + "\n"
