"""Renderers: one module per output format."""

from __future__ import annotations

from depthscope.report import json, markdown, table

RENDERERS = {"table": table.render, "json": json.render, "markdown": markdown.render}


def render(report, fmt: str, at: dict[str, int] | None = None) -> str:
    return RENDERERS[fmt](report, at)
