"""The fitted engine: exact work and depth at a sweep of concrete sizes, fitted to sums of exact terms.

For models torch.export cannot keep symbolic (Python loops over a dynamic size, recurrences that specialise the
length, guards that cut a range), each size is exported statically and analysed exactly; the counts are then fitted
with exact rational arithmetic (engine/fit.py) as sums of size^a * ceil(log2 size)^c and, where strided
convolutions and poolings round sizes, of ceil(size / 2^k) and floor(size / 2^k) terms. Powers of two choose the
smooth terms; sizes between them (odd ones, above and below powers of two, and spread out) confirm them or fit the
rounded terms. The fit is confirmed on sizes held out of it, powers of two and not; where it cannot be, the result
is labelled approximate with the reason.
"""

from __future__ import annotations

import itertools
import random
import time

from depthscope.capture.captured import capture
from depthscope.capture.dims import fit_symbols, resized_spec
from depthscope.engine.analysis import (APPROXIMATE, FITTED_EXACT, Analysis, FitInfo, Formulas, Provenance, build_analysis,
                                        formulas_of)
from depthscope.engine.fit import METRICS, SHAPES, Fitted, Sweep, coefficients, fit_sweep
from depthscope.engine.walk import walk_captured
from depthscope.errors import InputError
from depthscope.model_file import ModelSpec
from depthscope.symbols import SymbolInfo

POINTS = 5  # powers of two per Dim used to choose and solve the fit; one more is held out


def ladder(info: SymbolInfo, count: int) -> list[int]:
    """Powers of two inside the symbol's range, from the smallest at least max(min, 4)."""
    start = max(info.min, 4)
    p = 1 << (start - 1).bit_length()
    out = []
    while len(out) < count and (info.max is None or p <= info.max):
        out.append(p)
        p *= 2
    return out


def between_sizes(info: SymbolInfo, rungs: list[int], count: int = 64) -> list[int]:
    """Sizes in the symbol's range that are not powers of two, up to the top rung, in the order the fit uses them:
    just above and just below each power of two (where ceil(n/2^k) and floor(n/2^k) part from n/2^k), then
    spread out (every residue modulo small powers of two, so that rounded terms of every level are told apart)."""
    lo, hi = max(info.min, 3), rungs[-1]
    if info.max is not None:
        hi = min(hi, info.max)
    structured = []
    for p in rungs:
        structured += [p + 1, 2 * p - 1, 3 * p // 2 + 1, 3 * p // 2 - 1]
    rng = random.Random(lo * 1_000_003 + hi)
    spread = [rng.randint(lo, hi) for _ in range(len(structured) + 4 * count)] if hi > lo else []
    wanted = [v for pair in itertools.zip_longest(structured, spread) for v in pair if v is not None]
    out: list[int] = []
    for v in wanted:
        if lo <= v <= hi and v & (v - 1) and v not in out:
            out.append(v)
    return out[:count]


def fit_provenance(fitted: Fitted, names, seconds: float, mode: str, breakdown_at: dict, what: str,
                   fallback: str | None = None) -> Provenance:
    """Provenance of a fitted result: fitted-exact when every held-out size is reproduced (powers of two and sizes
    between them) and nothing was fitted at powers of two only, else approximate, with the reasons."""
    info = FitInfo(tuple(fitted.sizes), tuple(fitted.heldout), fitted.heldout_passed, seconds, tuple(names))
    fitted_in = ", ".join(names) or "nothing"
    reasons = [f"{what} fitted in {fitted_in} from exact counts at {len(fitted.sizes)} sizes (powers of two and "
               f"sizes between them), checked at {len(fitted.heldout)} held-out sizes"]
    exactness = FITTED_EXACT
    if not fitted.heldout_passed:
        sizes, metric, got, truth = fitted.failures[0]
        at = ", ".join(f"{k}={v}" for k, v in sizes.items())
        if truth is None:
            reasons.append(f"the fitted {metric} is not an integer at {at} ({got}); the formulas are approximate")
        else:
            reasons.append(f"the fitted {metric} does not reproduce the held-out size {at} ({got} against the exact "
                           f"{truth}); the formulas are approximate")
        exactness = APPROXIMATE
    if fitted.notes:
        reasons.extend(fitted.notes)
        exactness = APPROXIMATE
    return Provenance("fitted", mode, exactness, tuple(reasons), info, fallback, breakdown_at)


def analyze_fitted(spec: ModelSpec, train: bool = False, rules=None, points: int = POINTS, budget_s: float = 300.0,
                   fallback: str | None = None) -> Analysis:
    """Fit work, depth, FLOPs and bytes over sweeps of every Dim (powers of two and sizes between); confirm on held-out sizes."""
    start = time.perf_counter()
    mode = "train" if train else "inference"
    symbols = fit_symbols(spec)
    walks: dict = {}

    def walk_at(sizes: dict):
        key = tuple(sorted(sizes.items()))
        if key not in walks:
            walks[key] = walk_captured(capture(resized_spec(spec, sizes), train=train), rules)
        return walks[key]

    def measure(sizes: dict) -> dict:
        walked = walk_at(sizes)
        totals = formulas_of(walked)
        out = {m: coefficients(getattr(totals, m), m) for m in METRICS}
        out[SHAPES] = graph_shapes(walked.captured.graph_module)
        return out

    if not symbols:
        walked = walk_at({})
        info = FitInfo(({},), (), True, time.perf_counter() - start, ())
        return build_analysis(walked, Provenance("fitted", mode, FITTED_EXACT, ("no Dims: one static export",),
                                                 info, fallback, {}))
    ladders = {name: ladder(info, points + 1) for name, info in symbols.items()}
    for name, rungs in ladders.items():
        if len(rungs) < 3:
            raise InputError(f"the fitted engine needs at least 3 powers of two in {name}'s range; widen the Dim's bounds")
    base = {name: rungs[0] for name, rungs in ladders.items()}
    sweep = Sweep(measure, start + budget_s, "fitted engine")
    between = {name: between_sizes(symbols[name], rungs) for name, rungs in ladders.items()}
    fitted = fit_sweep(list(symbols), ladders, base, sweep, lambda metric, _: f"the model's {metric}", between)
    # the breakdowns (nodes, paths) are those of the largest size analysed
    largest = max(fitted.sizes, key=lambda s: (_product(s.values()), min(s.values())))
    provenance = fit_provenance(fitted, sorted(symbols), time.perf_counter() - start, mode, dict(largest),
                                "work, depth, FLOPs and bytes", fallback)
    return build_analysis(walk_at(largest), provenance, fitted_formulas(fitted), symbols)


def graph_shapes(gm) -> dict:
    """{(node, output, axis): size} of a static graph: where the fit reads which rounded sizes the model makes."""
    out = {}
    for node in gm.graph.nodes:
        val = node.meta.get("val")
        vals = val if isinstance(val, (list, tuple)) else (val,)
        for i, v in enumerate(vals):
            shape = getattr(v, "shape", None)
            if shape is not None:
                for axis, size in enumerate(shape):
                    if isinstance(size, int):
                        out[(node.name, i, axis)] = size
    return out


def fitted_formulas(fitted: Fitted) -> Formulas:
    return Formulas(**{m: fitted.formulas[m] for m in METRICS})


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out
