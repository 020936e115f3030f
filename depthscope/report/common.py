"""Helpers shared by the renderers: display sizes, numbers and shares."""

from __future__ import annotations

from depthscope.symbols import evaluate, fmt

DISPLAY_SIZE = 1024  # shares are computed here when no --at sizes are given (capped by each Dim's range)


def display_sizes(report, at: dict[str, int] | None) -> dict[str, int]:
    """Sizes used for shares: the --at sizes, else 1024 per symbol clamped into its range."""
    if at:
        return dict(at)
    sizes = {}
    for name, info in report.symbols.items():
        value = max(info.min, DISPLAY_SIZE)
        sizes[name] = min(value, info.max) if info.max is not None else value
    return sizes


def value_at(expr, report, sizes: dict[str, int]) -> float:
    symbol_sizes = {report.symbols[k].symbol: v for k, v in sizes.items() if k in report.symbols}
    return float(evaluate(expr, symbol_sizes))


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


def top_level_modules(report):
    """Modules one level below the root (plus root-level ops), heaviest first."""
    return [m for m in report.modules if m.path and "." not in m.path] + [m for m in report.modules if not m.path]


__all__ = ["display_sizes", "fmt", "human", "share", "sizes_label", "top_level_modules", "value_at"]
