"""Hyperparameters as symbols: formulas in widths and layer counts as well as in the Dims.

A model factory's integer keyword parameters (`def model(d: int = 64, layers: int = 2)`) cannot be export Dims
(layers change the graph, widths change weight shapes). depthscope builds the model at powers-of-two values of
each named hyperparameter, analyses each build symbolically in the Dims, and fits every coefficient of the
resulting formulas as an exact sum of h^a * log2(h)^c terms (rational arithmetic; ceil(log2 h) = log2 h at powers
of two), confirmed on held-out values. The Dims stay exact; the hyperparameters are labelled fitted.
"""

from __future__ import annotations

import itertools
import time
from fractions import Fraction

import sympy

from depthscope.engine.analysis import Report, analyze_captured
from depthscope.capture.captured import capture
from depthscope.model_file import hyperparameters, spec_from_namespace
from depthscope.errors import InputError
from depthscope.engine.fitted import MAX_TERMS, FitInfo, _detect_terms, _fits, _to_expr
from depthscope.symbols import SymbolInfo, size_symbol

LADDER = 6  # powers of two per hyperparameter: five to choose and solve the fit, the top one held out


def _ladder(default: int) -> list[int]:
    start = 1
    while start * 8 <= default:
        start *= 2
    return [start << k for k in range(LADDER)]


def _coefficients(expr: sympy.Expr, metric: str) -> dict:
    """{monomial in the Dims' atoms: rational coefficient} of an expanded formula."""
    if expr.has(sympy.Max):
        raise InputError(f"the model's {metric} is a Max of paths no size range orders; symbolic hyperparameters need "
                         "one closed form per build")
    out: dict = {}
    for term in sympy.Add.make_args(sympy.expand(expr)):
        coeff, rest = term.as_coeff_Mul()
        if not coeff.is_Rational:
            raise InputError(f"cannot fit the {metric} term {term}: its coefficient is not rational")
        out[rest] = out.get(rest, Fraction(0)) + Fraction(int(coeff.p), int(coeff.q))
    return out


def analyze_hyper(ns: dict, path: str, names: list[str], *, train: bool = False, rules=None,
                  budget_s: float = 600.0) -> Report:
    """Analyze a model file with the named factory hyperparameters as symbols."""
    start = time.perf_counter()
    available = {**hyperparameters(ns.get("example_inputs")), **hyperparameters(ns.get("model"))}
    unknown = [n for n in names if n not in available]
    if unknown:
        listing = ", ".join(sorted(available)) or "none (`model` must be a function or class with integer keyword defaults)"
        raise InputError(f"{path}: no integer hyperparameter {', '.join(unknown)} to make symbolic; available: {listing}")
    defaults = {n: available[n] for n in names}
    ladders = {n: _ladder(defaults[n]) for n in names}
    cache: dict[tuple, Report] = {}

    def at(values: dict) -> Report:
        full = dict(defaults, **values)
        key = tuple(sorted(full.items()))
        if key not in cache:
            if time.perf_counter() - start > budget_s:
                raise InputError("the hyperparameter sweep ran out of time; lower the defaults or make fewer symbolic")
            spec = spec_from_namespace(ns, path, full)
            cache[key] = analyze_captured(capture(spec, train=train), rules=rules)
        return cache[key]

    fitted: dict[str, sympy.Expr] = {}
    used: list[dict] = []
    for metric in ("work", "depth", "flops"):
        def coeffs_at(values, metric=metric):
            return _coefficients(getattr(at(values), metric), metric)

        per_name: dict[str, list] = {}
        for name in names:
            points = [({name: v}, coeffs_at({name: v})) for v in ladders[name][:-1]]
            used.extend(dict(defaults, **p) for p, _ in points)
            monomials = set().union(*[set(c) for _, c in points])
            terms: set = set()
            for mono in monomials:
                found = _detect_terms(name, [(p, c.get(mono, 0)) for p, c in points])
                if found is None:
                    raise InputError(f"no sum of {name}**a * log2({name})**c terms (a <= 3, c <= 2, up to {MAX_TERMS}) "
                                     f"fits the coefficient of {mono} in the {metric} over {name} = "
                                     f"{', '.join(map(str, ladders[name][:-1]))}")
                terms.update(found)
            per_name[name] = sorted(terms)
        basis = [{k: v for k, v in (item for item in combo if item)} for combo in
                 itertools.product(*[[None] + [(n, t) for t in per_name[n]] for n in names])]
        axes = {n: ladders[n][: len(per_name[n]) + 2] for n in names}
        grid = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
        used.extend(dict(defaults, **g) for g in grid)
        values = [(g, coeffs_at(g)) for g in grid]
        monomials = set().union(*[set(c) for _, c in values])
        total = sympy.S.Zero
        for mono in monomials:
            coeffs = _fits(basis, [(g, c.get(mono, 0)) for g, c in values])
            if coeffs is None:
                raise InputError(f"no product of per-hyperparameter terms fits the coefficient of {mono} in the "
                                 f"{metric} jointly in {', '.join(names)}")
            total += _to_expr(basis, coeffs) * mono
        fitted[metric] = sympy.expand(total)

    heldout = [dict(defaults, **{n: ladders[n][-1]}) for n in names]
    if len(names) > 1:
        heldout.append(dict(defaults, **{n: ladders[n][-1] for n in names}))
    passed = True
    for values in heldout:
        report = at(values)
        subs = {size_symbol(n): values[n] for n in names}
        for metric in fitted:
            if sympy.expand(sympy.nsimplify(fitted[metric].xreplace(subs)) - getattr(report, metric)) != 0:
                passed = False

    report = at({})
    symbols = dict(report.symbols)
    for n in names:
        symbols[n] = SymbolInfo(n, 1, None)
    report.symbols = dict(sorted(symbols.items()))
    report.work, report.depth, report.flops = fitted["work"], fitted["depth"], fitted["flops"]
    report.engine = "fitted"
    unique = [dict(t) for t in dict.fromkeys(tuple(sorted(u.items())) for u in used)]
    report.fit = FitInfo(unique, heldout, passed, time.perf_counter() - start, fitted_in=list(names))
    report.breakdown_at = dict(defaults)
    return report
