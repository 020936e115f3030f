"""Kernel launches: the ops on the critical path (the burdened depth) and every op on one stream (the roofline).

A node whose depth is polynomial in a size is a sequential loop (a scan, a while_loop, a recurrent module): it
launches once per trip, taken as the polynomial part of its depth's big-O (n for 14*n + 16).
"""

from __future__ import annotations

import functools

import sympy

from depthscope.complexity import big_o
from depthscope.symbols import evaluate, size_symbol


@functools.lru_cache(maxsize=4096)
def polynomial_part(expr) -> sympy.Expr:
    """big-O of expr with logarithms dropped: n for 14*n + 16, 1 for 3*ceil(log2 n) + 11."""
    bo = big_o(expr)
    return bo.replace(lambda e: isinstance(e, (sympy.log, sympy.ceiling)), lambda e: sympy.S.One)


def critical_path_launches(report, sizes: dict[str, int]) -> int:
    """K: ops on the critical path at `sizes`, each paying one launch.

    A step that is a sequential loop (depth polynomial in a size: a scan, a while_loop, a recurrent module) pays
    one launch per trip, taken as the polynomial part of its depth's big-O (n for 14*n + 16). A fitted analysis's
    path is that of one analysed build (`breakdown_at`): its count there is scaled with the depth when the depth
    grows polynomially in a fitted symbol.
    """
    steps = report.critical_path(sizes).steps
    total = 0
    for step in steps:
        try:
            poly = polynomial_part(step.depth)
            total += max(1, round(report.value(poly, sizes))) if poly.free_symbols else 1
        except Exception:  # noqa: BLE001 - an odd depth form counts as one launch
            total += 1
    built = report.breakdown_at
    if not total or not built:
        return total
    fitted = {size_symbol(name) for name in built}
    if not polynomial_part(report.depth).free_symbols & fitted:
        return total
    here = float(evaluate(report.depth, report.symbol_values(sizes)))
    there = report.value(report.depth, sizes)  # at the analysed build's values of the fitted symbols
    return max(1, round(total * here / there)) if there > 0 else total


def node_trips(node) -> sympy.Expr:
    """Launches of one node when it runs: the trips of a sequential loop, else 1 (an odd depth form: 1)."""
    try:
        poly = polynomial_part(node.cost.depth)
    except Exception:  # noqa: BLE001 - an odd depth form counts as one launch
        return sympy.S.One
    return poly if poly.free_symbols else sympy.S.One
