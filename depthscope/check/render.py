"""The three outputs of `depthscope check`: text, GitHub workflow annotations, and JSON."""

from __future__ import annotations

import json
import os

from depthscope.check.compare import Finding, ModelResult
from depthscope.config import GENERATE_METRICS, METRICS


TITLES = {"breach": "complexity budget exceeded", "regression": "complexity regression",
          "unmodeled": "op without a cost rule", "approximate": "approximate analysis",
          "error": "depthscope check error", "info": "depthscope check"}


def gh_data(text: str) -> str:
    """Escape the message of a workflow command (::error ...::message)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def gh_property(text: str) -> str:
    """Escape a property value of a workflow command (file=..., title=...)."""
    return gh_data(text).replace(":", "%3A").replace(",", "%2C")


def render_text(results: list[ModelResult], findings: list[Finding], summary: str, verbose: bool) -> str:
    lines = []
    for r in results:
        if verbose and r.summary is not None:
            parts = []
            for metric, s in r.metrics.items():
                limit = s.get("budget") or s.get("locked")
                kind = "budget" if "budget" in s else "lock"
                parts.append(f"{metric} O({s['class']})" + (f" ({kind} O({limit}))" if limit else ""))
            src = "cache" if r.cached else f"{r.seconds:.1f} s" + (f", re-analyzed: {r.miss}" if r.miss else "")
            exactness = r.summary.get("exactness") or "exact"
            unmodeled = r.summary.get("unmodeled") or []
            extra = (", unmodeled " + ", ".join(f"{op} x{n}" for op, n in unmodeled)) if unmodeled else ""
            lines.append(f"{r.entry.key}: {r.summary.get('engine', r.engine)} engine, {', '.join(parts)} [{src}], "
                         f"{exactness}{extra}")
    for f in findings:
        lines.append(("note: " if f.kind == "info" else "") + f.message)
    lines.append(summary)
    return "\n".join(lines) + "\n"


def _workspace_path(path: str, abspath: str | None) -> str:
    """The file as GitHub names it: relative to $GITHUB_WORKSPACE (the checkout) when the file is inside it."""
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace and abspath:
        rel = os.path.relpath(abspath, workspace)
        if not rel.startswith(os.pardir):
            return rel.replace(os.sep, "/")
    return path


def render_github(findings: list[Finding], summary: str, files: dict[str, str] | None = None) -> str:
    lines = []
    files = files or {}
    for f in findings:
        level = {"info": "notice"}.get(f.kind, "error")
        title = TITLES.get(f.kind, "depthscope check")
        file = _workspace_path(f.path, files.get(f.path))
        lines.append(f"::{level} file={gh_property(file)},title={gh_property(title)}::{gh_data(f.message)}")
    lines.append(summary)
    return "\n".join(lines) + "\n"


def render_json(results: list[ModelResult], findings: list[Finding], exit_code: int, lock: dict) -> str:
    models = []
    for r in results:
        s = r.summary or {}
        models.append({
            "path": r.entry.key, "engine": s.get("engine", r.engine), "cached": r.cached,
            "seconds": round(r.seconds, 3), "fallback": s.get("fallback"), "unmodeled": s.get("unmodeled", []),
            "exactness": s.get("exactness"), "reasons": s.get("reasons", []),
            "heldout_passed": s.get("heldout_passed"), "cache_miss": r.miss,
            **{m: r.metrics.get(m) for m in METRICS},
            **{m: r.metrics[m] for m in GENERATE_METRICS if m in r.metrics},
        })
    out = {"ok": exit_code == 0, "exit_code": exit_code, "models": models,
           "findings": [f.to_dict() for f in findings], "lock": lock}
    return json.dumps(out, indent=2) + "\n"


__all__ = ["TITLES", "gh_data", "gh_property", "render_github", "render_json", "render_text"]
