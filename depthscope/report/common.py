"""Helpers shared by the renderers: display sizes, numbers and shares."""

from __future__ import annotations

from depthscope.symbols import fmt

def display_sizes(report, at: dict[str, int] | None) -> dict[str, int]:
    """Sizes used for shares: the --at sizes, else the Analysis's display size per symbol within its range."""
    return report.view_sizes(at)


def value_at(expr, report, sizes: dict[str, int]) -> float:
    return report.value(expr, sizes)


def share(part: float, total: float) -> str:
    return f"{100.0 * part / total:.1f}%" if total else "-"


def human(value: float) -> str:
    """3.2e+09-style for big numbers, plain integers below a million."""
    if value != value:  # NaN
        return "nan"
    if abs(value) < 1e6 and float(value).is_integer():
        return str(int(value))
    if abs(value) < 1e6:
        return f"{value:.3g}"
    return f"{value:.3e}"


def sizes_label(sizes: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items()) or "concrete"


def top_level_modules(modules):
    """Modules one level below the root (plus root-level ops)."""
    return [m for m in modules if m.path and "." not in m.path] + [m for m in modules if not m.path]


def provenance_line(report) -> str:
    """One line on how far the numbers can be trusted: exact, fitted-exact or approximate, and why."""
    p = report.provenance
    text = {"exact": "exact (symbolic)", "fitted-exact": "fitted-exact", "approximate": "APPROXIMATE"}[p.exactness]
    line = f"result: {text}" + (": " + "; ".join(p.reasons) if p.reasons else "")
    if p.concrete_at:  # pipeline.analysis_at: a second capture with these Dims static, below their export range
        fixed = sizes_label(dict(p.concrete_at))
        line += (f"\nfrom a concrete capture at {fixed} (below the export range): the formulas hold with {fixed} "
                 f"fixed, in the other symbols")
    return line


__all__ = ["display_sizes", "fmt", "human", "provenance_line", "share", "sizes_label", "top_level_modules", "value_at"]
