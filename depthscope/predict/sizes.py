"""Sizes to predict or time at: NAME=INT[,INT...] options, their cartesian product, and the example's sizes."""

from __future__ import annotations

import itertools
import re

from depthscope.errors import InputError

_AT_LIST = re.compile(r"^([A-Za-z_]\w*)=(\d+(?:,\d+)*)$")


def parse_sizes(values, option: str = "--at") -> dict[str, list[int]]:
    """NAME=INT or NAME=INT,INT,... from repeated options, in the order given."""
    out: dict[str, list[int]] = {}
    for text in values:
        m = _AT_LIST.match(text.strip().replace(" ", ""))
        if not m:
            raise InputError(f"{option} {text!r}: expected NAME=INT or NAME=INT,INT,... with positive integers, "
                             f"e.g. {option} n=1024")
        sizes = [int(v) for v in m.group(2).split(",")]
        if any(v <= 0 for v in sizes):
            raise InputError(f"{option} {text!r}: sizes must be positive integers")
        if m.group(1) in out:
            raise InputError(f"{option} {m.group(1)} given twice: give each size once (several values as "
                             f"{option} {m.group(1)}=INT,INT,...)")
        out[m.group(1)] = sizes
    return out


def complete_sizes(report, given: dict[str, int], defaults: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """Every symbol's size: given, else the example's; returns (sizes, names filled from the example). Sizes below
    a symbol's min pass: pipeline.analysis_at gives the Analysis that evaluates them."""
    from depthscope.symbols import sizes_below  # sympy: only when the command runs

    sizes, filled = {}, []
    for name in report.symbols:
        if name in given:
            sizes[name] = given[name]
        elif name in defaults:
            sizes[name] = defaults[name]
            filled.append(name)
    for name in given:
        if name not in sizes:
            sizes[name] = given[name]  # unknown names: report.symbol_values says so
    sizes_below(report.symbols, sizes)  # names, positive integers, maxima (below a min: pipeline.analysis_at)
    return sizes, filled


def expand_points(lists: dict[str, list[int]]) -> list[dict[str, int]]:
    """The cartesian product of per-symbol size lists, in the order given."""
    names = list(lists)
    return [dict(zip(names, combo)) for combo in itertools.product(*(lists[n] for n in names))]
