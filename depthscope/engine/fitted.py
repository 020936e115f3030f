"""The fitted engine: exact work and depth at a sweep of concrete sizes, fitted to sums of size^a * log2(size)^c.

For models torch.export cannot keep symbolic (Python loops over a dynamic size, recurrences that specialise the
length), each size is exported statically and analysed exactly; the counts are then fitted with exact rational
arithmetic (engine/fit.py). Sizes are powers of two, where ceil(log2 n) = log2 n, so logarithmic terms fit exactly
too. The fit is chosen on some sizes and confirmed on sizes held out of it.
"""

from __future__ import annotations

import time

from depthscope.capture.captured import capture
from depthscope.capture.dims import fit_symbols, resized_spec
from depthscope.engine.analysis import (APPROXIMATE, FITTED_EXACT, Analysis, FitInfo, Formulas, Provenance, build_analysis,
                                        formulas_of)
from depthscope.engine.fit import Fitted, Sweep, coefficients, fit_sweep
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


def fit_provenance(fitted: Fitted, names, seconds: float, mode: str, breakdown_at: dict, what: str,
                   fallback: str | None = None) -> Provenance:
    """Provenance of a fitted result: fitted-exact when every held-out size is reproduced, else approximate."""
    info = FitInfo(tuple(fitted.sizes), tuple(fitted.heldout), fitted.heldout_passed, seconds, tuple(names))
    fitted_in = ", ".join(names) or "nothing"
    reasons = [f"{what} fitted in {fitted_in} from exact counts at {len(fitted.sizes)} sizes (powers of two)"]
    exactness = FITTED_EXACT
    if not fitted.heldout_passed:
        sizes, metric, got, truth = fitted.failures[0]
        at = ", ".join(f"{k}={v}" for k, v in sizes.items())
        reasons.append(f"the fitted {metric} does not reproduce the held-out size {at} ({got} against the exact "
                       f"{truth}); the formulas are approximate")
        exactness = APPROXIMATE
    return Provenance("fitted", mode, exactness, tuple(reasons), info, fallback, breakdown_at)


def analyze_fitted(spec: ModelSpec, train: bool = False, rules=None, points: int = POINTS, budget_s: float = 300.0,
                   fallback: str | None = None) -> Analysis:
    """Fit work, depth and FLOPs over powers-of-two sweeps of every Dim; confirm on held-out sizes."""
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
        totals = formulas_of(walk_at(sizes))
        return {m: coefficients(getattr(totals, m), m) for m in ("work", "depth", "flops")}

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
    fitted = fit_sweep(list(symbols), ladders, base, sweep, lambda metric, _: f"the model's {metric}")
    # the breakdowns (nodes, paths) are those of the largest size analysed
    largest = max(fitted.sizes, key=lambda s: (_product(s.values()), min(s.values())))
    provenance = fit_provenance(fitted, sorted(symbols), time.perf_counter() - start, mode, dict(largest),
                                "work, depth and FLOPs", fallback)
    return build_analysis(walk_at(largest), provenance, fitted_formulas(fitted), symbols)


def fitted_formulas(fitted: Fitted) -> Formulas:
    f = fitted.formulas
    return Formulas(f["work"], f["depth"], f["flops"])


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out
