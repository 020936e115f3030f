"""Markdown renderer: the same sections as the terminal table, as GitHub tables."""

from __future__ import annotations

from .table import sections, unmodeled_warning


def render(report, at: dict[str, int] | None = None) -> str:
    parts = [f"# depthscope report: {report.model}"]
    for title, table in sections(report, at, "github"):
        parts.append(f"## {title}\n\n{table}")
    warning = unmodeled_warning(report)
    if warning:
        parts.append(f"> **{warning}**")
    return "\n\n".join(parts) + "\n"
