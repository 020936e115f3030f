"""Markdown renderer: the same sections as the terminal table, as GitHub tables."""

from __future__ import annotations

from depthscope.report.table import bytes_note, sections, unknowns_note, unmodeled_warning


def render(report, at: dict[str, int] | None = None) -> str:
    parts = [f"# depthscope report: {report.model}"]
    for title, table in sections(report, at, "github"):
        heading, _, note = title.partition("\n")  # a second title line (the provenance) is a paragraph
        parts.append(f"## {heading}\n\n" + (f"**{note}**\n\n" if note else "") + table)
    for note in (bytes_note(report), unknowns_note(report), unmodeled_warning(report)):
        if note:
            parts.append(f"> **{note}**")
    return "\n\n".join(parts) + "\n"
