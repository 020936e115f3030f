"""Where a regime changes over one size: a doubling scan with bisection, and the sentence that says it.

`regime_changes(classify, lo, hi)` labels sizes (any labels: "work"/"depth", "memory"/"compute"/...), scans
lo, 2 lo, 4 lo, ... up to hi and bisects on the integers every interval whose two ends differ, so each change is
found at the first integer size with the new label. A regime that changes and changes back between two scanned
sizes is not seen (the scan's resolution is a factor of two).
"""

from __future__ import annotations

SEARCH_CAP = 2**40  # the scan's upper end for a symbol without a max


def scan_sizes(lo: int, hi: int) -> list[int]:
    """lo, 2 lo, 4 lo, ... and hi (each at least one more than the last)."""
    sizes, x = [lo], lo
    while x < hi:
        x = min(hi, max(x + 1, x * 2))
        sizes.append(x)
    return sizes


def regime_changes(classify, lo: int, hi: int, until: str | None = None) -> tuple[str, list[tuple[int, str]]]:
    """The label at lo and each (first size, new label) where classify(size) changes in [lo, hi].

    With `until`, the scan stops at the first change to that label (a monotone search needs no more).
    """
    seen: dict[int, str] = {}

    def label(x: int) -> str:
        if x not in seen:
            seen[x] = classify(x)
        return seen[x]

    first = label(lo)
    changes: list[tuple[int, str]] = []
    prev = lo
    for x in scan_sizes(lo, hi)[1:]:
        while label(x) != label(prev):  # bisect: the first size after prev whose label differs from prev's
            a, b = prev, x
            while b - a > 1:
                mid = (a + b) // 2
                if label(mid) == label(prev):
                    a = mid
                else:
                    b = mid
            changes.append((b, label(b)))
            if until is not None and label(b) == until:
                return first, changes
            prev = b
        prev = x
    return first, changes


def about(x: int) -> str:
    """A size rounded to two significant figures, with thousands separators."""
    if x < 100:
        return str(x)
    digits = len(str(x)) - 2
    return f"{round(x, -digits):,}"


def upper_end(hi: int, capped: bool) -> str:
    """'1,024 (its max)' or '2^40 (the search limit)'."""
    return f"2^{hi.bit_length() - 1} (the search limit)" if capped else f"{hi:,} (its max)"


def changes_clause(symbol: str, first: str, changes: list[tuple[int, str]], lo: int, hi: int, capped: bool) -> str:
    """'memory-bound until b is about 40, then compute-bound' (labels get '-bound'); one label: its whole range."""
    if not changes:
        return f"{first}-bound at every {symbol} from {lo:,} to {upper_end(hi, capped)}"
    text = f"{first}-bound until {symbol} is about {about(changes[0][0])}"
    for (_, label), (at, _) in zip(changes, changes[1:]):
        text += f", then {label}-bound until about {about(at)}"
    return text + f", then {changes[-1][1]}-bound"
