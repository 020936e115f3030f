"""Hyperparameters as symbols: formulas in widths and layer counts as well as in the Dims.

A model factory's integer keyword parameters (`def model(d: int = 64, layers: int = 2)`) cannot be export Dims
(layers change the graph, widths change weight shapes). depthscope builds the model at powers-of-two values of
each named hyperparameter, analyses each build symbolically in the Dims, and fits every coefficient of the
resulting formulas as an exact sum of h^a * ceil(log2 h)^c terms (engine/fit.py), confirmed on held-out values: the
top power of two and values between powers of two (3 * 2^j, which keeps widths divisible by head counts). The Dims
stay exact; the hyperparameters are labelled fitted.
"""

from __future__ import annotations

import time

from depthscope.capture.captured import capture
from depthscope.engine.analysis import Analysis, build_analysis, formulas_of
from depthscope.engine.fit import METRICS, Sweep, coefficients, fit_sweep
from depthscope.engine.fitted import fit_provenance, fitted_formulas
from depthscope.engine.walk import walk_captured
from depthscope.errors import InputError
from depthscope.model_file import hyperparameters, spec_from_namespace
from depthscope.symbols import SymbolInfo

LADDER = 6  # powers of two per hyperparameter: five to choose and solve the fit, the top one held out


def ladder(default: int) -> list[int]:
    start = 1
    while start * 8 <= default:
        start *= 2
    return [start << k for k in range(LADDER)]


def between(rungs: list[int]) -> list[int]:
    """Values between the powers of two of a ladder that keep its divisibility (3 * 2**j: 24, 48 for widths;
    3, 6 for layer counts), smallest first: where ceil(log2 h) and log2 h part, for the held-out check."""
    out = [3 * r // 2 for r in rungs[1:-1]] + ([3] if rungs[0] == 1 else [])
    return sorted(set(v for v in out if v & (v - 1)))


def hyper_defaults(ns: dict, path: str, names: list[str]) -> dict[str, int]:
    """The default of each named integer hyperparameter of the file's factories (exit 2 for unknown names)."""
    available = {**hyperparameters(ns.get("example_inputs")), **hyperparameters(ns.get("model"))}
    unknown = [n for n in names if n not in available]
    if unknown:
        listing = ", ".join(sorted(available)) or "none (`model` must be a function or class with integer keyword defaults)"
        raise InputError(f"{path}: no integer hyperparameter {', '.join(unknown)} to make symbolic; available: {listing}")
    return {n: available[n] for n in names}


def analyze_hyper(ns: dict, path: str, names: list[str], *, train: bool = False, rules=None,
                  budget_s: float = 600.0) -> Analysis:
    """Analyze a model file with the named factory hyperparameters as symbols."""
    start = time.perf_counter()
    defaults = hyper_defaults(ns, path, names)
    walks: dict = {}

    def walk_at(values: dict):
        key = tuple(sorted(values.items()))
        if key not in walks:
            spec = spec_from_namespace(ns, path, dict(defaults, **values))
            walks[key] = walk_captured(capture(spec, train=train), rules)
        return walks[key]

    def measure(values: dict) -> dict:
        totals = formulas_of(walk_at(values))
        return {m: coefficients(getattr(totals, m), m) for m in METRICS}

    sweep = Sweep(measure, start + budget_s, "hyperparameter sweep")
    ladders = {n: ladder(defaults[n]) for n in names}
    fitted = fit_sweep(names, ladders, defaults, sweep, lambda metric, mono: f"the coefficient of {mono} in the {metric}",
                       {n: between(ladders[n]) for n in names}, rounding=False)
    walked = walk_at(dict(defaults))
    symbols = dict(walked.captured.symbols)
    for n in names:
        symbols[n] = SymbolInfo(n, 1, None)
    provenance = fit_provenance(fitted, list(names), time.perf_counter() - start, "train" if train else "inference",
                                dict(defaults), "the dependence on the hyperparameters is")
    return build_analysis(walked, provenance, fitted_formulas(fitted), symbols)
