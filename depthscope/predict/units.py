"""Numbers in words for predict and validate: seconds, FLOP/s, bytes, speedups, counts and slopes."""

from __future__ import annotations


def seconds(s: float | None) -> str:
    """1.23 s, 4.56 ms, 7.89 µs, 12.3 ns."""
    if s is None:
        return "-"
    a = abs(s)
    if a == 0:
        return "0 s"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if a >= scale or unit == "ns":
            return f"{s / scale:.3g} {unit}"
    return f"{s:.3g} s"  # pragma: no cover


def flops(f: float) -> str:
    """1.23 TFLOP/s, 4.56 GFLOP/s, ..."""
    for unit, scale in (("PFLOP/s", 1e15), ("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if f >= scale:
            return f"{f / scale:.3g} {unit}"
    return f"{f:.3g} FLOP/s"


def speed(x) -> str:
    """A speedup: 1,234 from a thousand on, else three significant figures; "-" for None."""
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 1000 else f"{x:.3g}"


def number(x) -> str:
    """A count in human form (1.5M), "-" for None."""
    from depthscope.report.common import human

    return human(float(x)) if x is not None else "-"


def slope_text(s) -> str:
    """A log-log slope to two decimals, "n/a" for None."""
    return "n/a" if s is None else f"{s:.2f}"


def size_bytes(n) -> str:
    """Bytes in decimal units: 512 B, 12.4 kB, 3.35 MB, 1.2 GB ("-" for None)."""
    if n is None:
        return "-"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def rate_bytes(b: float) -> str:
    """A bandwidth: 3.35 TB/s, 20 GB/s."""
    return size_bytes(b) + "/s"


def ratio(x) -> str:
    """An intensity or other ratio to three significant figures ("-" for None)."""
    return "-" if x is None else f"{x:.3g}"
