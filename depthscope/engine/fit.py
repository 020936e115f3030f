"""Sweep and fit: exact counts at chosen sizes, fitted exactly as sums of terms that are integers at every size.

One loop serves both fitted engines: fitted Dims (the whole count is one coefficient) and fitted hyperparameters
(each coefficient of a formula that is symbolic in the Dims). Per symbol, the smallest set of terms that reproduces
a one-dimensional sweep is chosen: first v**a * ceil(log2 v)**c from powers of two, confirmed at sizes between them;
where those disagree (strided convolutions and poolings make ceil(v/2**k) and floor(v/2**k) sizes), the floor and
ceiling terms of engine/terms.py are fitted from sizes between powers of two. Then the products of those terms (and
the logarithm of products, for a reduction over sizes of several symbols) are solved jointly on a grid, in rational
arithmetic, and checked at held-out sizes: the top power of two of each symbol, and sizes between powers of two
that no fit used, each symbol alone and all together. A formula that is not an integer at an integer size, or that
misses a held-out size, makes the result approximate, as does a metric that only powers of two could fit.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import sympy

from depthscope.engine.terms import (LOG_OF, SMOOTH, basis_value, ceil_atom, find_atoms, fits, floor_atom,
                                     independent_columns, inner_value, is_rounding, rounding_family, smooth_equivalent,
                                     sparse_fit, switch_sizes, to_expr)
from depthscope.errors import InputError
from depthscope.symbols import evaluate, size_symbol

METRICS = ("work", "depth", "flops")
CANDIDATES = SMOOTH  # per-symbol smooth terms (power of size, power of ceil(log2 size)), simplest first
MAX_TERMS = 3  # smooth terms per symbol besides the constant
PROBES = 2  # sizes between powers of two that must confirm a smooth fit
MAX_LEVELS = 6  # ceil(v / 2**k) for k up to this
ATOM_POINTS = 10  # sizes between powers of two measured before reading the rounded sizes off the graphs' shapes
SHAPES = "shapes"  # optional key of a measurement: {shape entry: its value} of the graph at that size
MAX_GRID = 160  # sizes in one joint fit at most; a larger exact fit falls back to powers of two (approximate)
MAX_JOINT_LOGS = 16  # joint ceil(log2(product)) candidates at most

Coefficients = dict  # {monomial in the exact symbols (1 for a plain count): Fraction}
Measure = Callable[[dict], dict]  # sizes -> {metric: Coefficients}


def detect_terms(name: str, points: list[tuple[dict, int]]) -> list[tuple] | None:
    """The smallest set of smooth per-symbol terms that fits a 1-D sweep exactly (constant always included)."""
    for k in range(0, MAX_TERMS + 1):
        for subset in itertools.combinations(CANDIDATES, k):
            basis = [{}] + [{name: t} for t in subset]
            if len(points) < len(basis) + 1:
                continue
            if fits(basis, points) is not None:
                return list(subset)
    return None


@dataclass(frozen=True)
class Fitted:
    """Fitted formulas per metric, the sizes that chose and solved them, and the held-out check."""

    formulas: dict
    sizes: tuple
    heldout: tuple
    heldout_passed: bool
    failures: tuple  # (sizes, metric, fitted value, measured value or None: not an integer)
    notes: tuple = ()  # why a metric is approximate although no held-out size disagreed

    @property
    def exact(self) -> bool:
        return self.heldout_passed and not self.notes


class TimeUp(InputError):
    """The sweep's time budget ran out."""


class Sweep:
    """Measures at sizes once each (a dict from sizes to coefficients), within a time budget."""

    def __init__(self, measure: Measure, deadline: float, what: str):
        self.measure, self.deadline, self.what = measure, deadline, what
        self.cache: dict = {}
        self.failed: dict = {}
        self.seconds = 0.0

    def at(self, sizes: dict) -> dict:
        key = tuple(sorted(sizes.items()))
        if key in self.failed:
            raise self.failed[key]
        if key not in self.cache:
            if time.perf_counter() > self.deadline:
                raise TimeUp(f"the {self.what} ran out of time before the sweep finished")
            start = time.perf_counter()
            try:
                self.cache[key] = self.measure(dict(sizes))
            except TimeUp:
                raise
            except InputError as exc:
                self.failed[key] = exc
                raise
            finally:
                self.seconds += time.perf_counter() - start
        return self.cache[key]

    def try_at(self, sizes: dict) -> dict | None:
        """at(sizes), or None when the model cannot be analysed there (a size its code rejects)."""
        try:
            return self.at(sizes)
        except TimeUp:
            raise
        except InputError:
            return None

    def mean_seconds(self) -> float:
        return self.seconds / max(1, len(self.cache))

    def left(self) -> float:
        return self.deadline - time.perf_counter()


class _Fit:
    """The state of one fit_sweep call."""

    def __init__(self, names, ladders, base, sweep, describe, between, rounding):
        self.names, self.ladders, self.base, self.sweep = names, ladders, base, sweep
        self.describe, self.rounding = describe, rounding
        self.between = {n: list(between.get(n, ())) for n in names} if between else {n: [] for n in names}
        self.used: list[dict] = []
        self.notes: list[str] = []
        self.designs: dict = {}  # name -> sizes of its 1-D fit that measured
        self.atom_cache: dict = {}
        self.switch: dict = {}
        self.alternatives: dict = {}  # (metric, name) -> log terms that fit the 1-D sweep as well as the chosen one

    def at(self, sizes):
        self.used.append(dict(sizes))
        return self.sweep.at(sizes)

    def line(self, name: str, sizes: list[int], metric: str) -> list[tuple[dict, Coefficients]]:
        out = []
        for v in sizes:
            got = self.sweep.try_at(dict(self.base, **{name: v}))
            if got is not None:
                self.used.append(dict(self.base, **{name: v}))
                out.append(({name: v}, got[metric]))
        return out

    def between_points(self, name: str, count: int, metric: str) -> list:
        """Up to `count` measured sizes between powers of two for `name` (others at base)."""
        points = []
        for v in self.between[name]:
            if len(points) >= count:
                break
            points.extend(self.line(name, [v], metric))
        return points

    # -- one symbol ------------------------------------------------------------------------------

    def symbol_terms(self, metric: str, name: str) -> list:
        pow_sizes = self.ladders[name][:-1]
        points = [({name: v}, self.at(dict(self.base, **{name: v}))[metric]) for v in pow_sizes]
        monos = set().union(*[set(c) for _, c in points])
        smooth: dict = {m: detect_terms(name, [(p, c.get(m, 0)) for p, c in points]) for m in monos}
        self.designs.setdefault(name, set()).update(pow_sizes)
        if not self.rounding:
            return self._smooth_or_refuse(metric, name, smooth)
        probes = self.between_points(name, PROBES, metric)
        together = points + probes
        if all(s is not None and fits([{}] + [{name: t} for t in s], [(p, c.get(m, 0)) for p, c in together])
               is not None for m, s in smooth.items()):
            return sorted({t for s in smooth.values() for t in s})
        found = self._rounding_terms(metric, name, points, smooth)
        if found is not None:
            return found
        shown = ", ".join(str(v) for v in self.between[name][:3])
        self.notes.append(f"the {metric} in {name} is not a sum of {name}**a * ceil(log2 {name})**c or of "
                          f"ceil/floor({name}/2**k) terms between powers of two (tried {name} = {shown}, ...); "
                          "it is fitted at powers of two only")
        return self._smooth_or_refuse(metric, name, smooth)

    def _smooth_or_refuse(self, metric, name, smooth) -> list:
        for mono, found in smooth.items():
            if found is None:
                raise InputError(f"no sum of {name}**a * log2({name})**c terms (a <= 3, c <= 2, up to {MAX_TERMS} "
                                 f"terms) fits {self.describe(metric, mono)} over {name} = "
                                 f"{', '.join(map(str, self.ladders[name][:-1]))}; the fitted engine cannot describe it")
        return sorted({t for s in smooth.values() for t in s})

    def _rounding_terms(self, metric, name, points, smooth) -> list | None:
        """Terms in the rounded sizes of `name`: the sizes the graph's shapes show (each shape that changes with
        `name` alone, as c * floor((v + r)/2**k) + e), else ceil(v/2**k) and floor(v/2**k); fitted on powers of two
        and sizes between them."""
        top = max(self.between[name] + self.ladders[name]) if self.between[name] else 0
        levels = min(MAX_LEVELS, max(1, top.bit_length() - 2))
        degree = max([a for s in smooth.values() if s for a, _ in s] + [0])
        degree = 2 if degree >= 2 or any(s is None for s in smooth.values()) else 1
        base_terms = sorted({t for s in smooth.values() if s for t in s})
        self.between_points(name, ATOM_POINTS, metric)
        atoms = self._atoms(name, levels)
        switch = self.switches(name)
        steps = [({name: v}, c) for v in switch[:2 * len(atoms)] for c in [self.sweep.try_at(dict(self.base, **{name: v}))]
                 if c is not None]
        self.used.extend(dict(self.base, **{name: p[name]}) for p, _ in steps)
        points = points + [(p, c[metric]) for p, c in steps]
        if atoms:
            families = [rounding_family(atoms, degree, True)]
        else:
            ceils, floors = [ceil_atom(k) for k in range(1, levels + 1)], [floor_atom(k) for k in range(1, levels + 1)]
            families = [rounding_family(a, degree, True) for a in (ceils, floors, ceils + floors)]
        for family in families:
            basis = [{}] + [{name: t} for t in base_terms + family]
            want = len(basis) + 4
            while True:  # enough sizes between powers of two that every term of the family is told apart
                extra = self.between_points(name, want, metric)
                everything = points + extra
                rows = [[basis_value(t, p) for t in basis] for p, _ in everything]
                if len(independent_columns(rows)) == len(basis) or len(extra) < want or want > 3 * len(basis) + 8:
                    break
                want += 4
            if len(everything) < len(basis) + 2:
                continue
            terms: set = set()
            for mono in set().union(*[set(c) for _, c in everything]):
                got = sparse_fit(basis, [(p, c.get(mono, 0)) for p, c in everything])
                if got is None:
                    break
                terms.update(t[name] for t in got[0] if t)
            else:
                self.designs[name].update(p[name] for p, _ in everything)
                self._log_alternatives(metric, name, sorted(terms, key=str), atoms, everything)
                return sorted(terms, key=str)
        return None

    def _log_alternatives(self, metric, name, terms, atoms, points) -> None:
        """Other rounded sizes whose logarithm fits the 1-D sweep as well as the chosen one (ceil(log2 floor((v+1)/4))
        = 1 + ceil(log2 floor((v+5)/8)) for v >= 8): alone they are one function, in a product with another
        symbol's size they are not, so the joint fit tries each."""
        found = self.alternatives.setdefault((metric, name), set())
        for t in terms:
            if t[0] != "log-div":
                continue
            for atom in atoms:
                other = ("log-div", atom)
                if other in terms or other in found:
                    continue
                basis = [{}] + [{name: other if x == t else x} for x in terms]
                if all(fits(basis, [(p, c.get(m, 0)) for p, c in points]) is not None
                       for m in set().union(*[set(c) for _, c in points])):
                    found.add(other)

    def _atoms(self, name: str, levels: int) -> list:
        """The rounded sizes (k, r) of `name` in the graph: every shape entry that changes with `name` alone and is
        c * floor((v + r)/2**k) + e over the sizes measured (empty when the graphs carry no shapes). Where the sizes
        measured fit several (k, r), a size that tells the first two apart (v + r = 0 mod 2**k for the second) is
        measured, until one is left."""
        if name in self.atom_cache:
            return self.atom_cache[name]
        lo, hi = min(self.ladders[name]), max(self.ladders[name])
        found: set = set()
        for _ in range(12):
            series = self._series(name)
            if series is None:
                return []
            ambiguous, found = None, set()
            for points in series:
                fits_all = find_atoms(points, levels)
                if fits_all:
                    found.add(fits_all[0])
                if len(fits_all) > 1 and ambiguous is None:
                    ambiguous = fits_all[1]
            if ambiguous is None:
                break
            k, r = ambiguous
            measured = {v for v in self.between[name]} | set(self.ladders[name])
            step = 1 << k
            start = lo + ((-r - lo) % step)
            chosen = next((v for v in range(start, hi + 1, step) if v & (v - 1) and
                           self.sweep.try_at(dict(self.base, **{name: v})) is not None), None)
            if chosen is None:
                break
            if chosen not in measured:
                self.between[name].append(chosen)
            self.used.append(dict(self.base, **{name: chosen}))
        found.discard((0, 0))
        self.atom_cache[name] = sorted(found)
        return self.atom_cache[name]

    def switches(self, name: str) -> list[int]:
        """Sizes where ceil(log2 .) of one of name's rounded sizes (or of name itself) steps, one atom after
        another: what the fit of logarithms, and their held-out check, must see."""
        if not self.rounding:
            return []  # hyperparameters: only the values between powers of two the caller gave
        if name not in self.switch:
            lo, hi = min(self.ladders[name]), max(self.ladders[name])
            hi = max([hi] + self.between[name]) if self.between[name] else hi
            lists = [switch_sizes(a, lo, hi) for a in [(0, 0)] + self.atom_cache.get(name, [])]
            self.switch[name] = [v for group in itertools.zip_longest(*lists) for v in group if v is not None]
        return self.switch[name]

    def _series(self, name: str) -> list | None:
        """Each distinct shape entry's values over the sizes of `name` measured so far (others at base)."""
        series: dict = {}
        sizes = sorted(v for v in set(self.ladders[name][:-1]) | set(self.between[name])
                       if tuple(sorted(dict(self.base, **{name: v}).items())) in self.sweep.cache)
        for v in sizes:
            shapes = self.sweep.cache[tuple(sorted(dict(self.base, **{name: v}).items()))].get(SHAPES)
            if shapes is None:
                return None
            for key, value in shapes.items():
                series.setdefault(key, []).append((v, value))
        return [list(p) for p in {tuple(points) for points in series.values() if len(points) == len(sizes)}]

    # -- joint -----------------------------------------------------------------------------------

    def axis(self, name: str, terms: list, count: int, exact_sizes: bool, logs: tuple = ()) -> list[int]:
        if not exact_sizes:
            return self.ladders[name][:count]
        basis = [{}] + [{name: t} for t in terms]
        design = self.designs.get(name, set())
        pool = []
        if logs:  # where the logarithms of the sizes in the joint terms step, first
            lo, hi = min(self.ladders[name]), max(self.ladders[name] + self.between[name])
            inners = [t[1] if t[0] == "log-div" else (0, 0) for t in logs]
            lists = [switch_sizes(a, lo, hi) for a in inners]
            pool = [v for group in itertools.zip_longest(*lists) for v in group if v is not None]
        pool += sorted(v for v in design if v & (v - 1) and v not in pool)  # then other sizes between powers of two
        pool += [v for v in self.between[name] if v not in pool] + sorted(v for v in design if not v & (v - 1))
        chosen, rows = [], []
        for v in pool:  # sizes that tell the terms apart, then more up to count
            row = [basis_value(t, {name: v}) for t in basis]
            if len(independent_columns(rows + [row])) > len(independent_columns(rows)) or (
                    len(independent_columns(rows)) == len(basis) and len(chosen) < count):
                chosen.append(v)
                rows.append(row)
            if len(chosen) >= count:
                break
        return sorted(chosen)

    def joint(self, metric: str, per_name: dict, exact: bool) -> sympy.Expr | None:
        names = self.names
        if not exact:
            per_name = {n: sorted({smooth_equivalent(t) for t in ts}) for n, ts in per_name.items()}
        basis = [{k: v for k, v in (item for item in combo if item)} for combo in
                 itertools.product(*[[None] + [(n, t) for t in per_name[n]] for n in names])]
        logs = _joint_logs(per_name, {n: self.alternatives.get((metric, n), set()) for n in names}) if exact else []
        in_logs = {n for term in logs for n, _ in term[LOG_OF]}
        rounding = {n for n, ts in per_name.items() if any(is_rounding(t) for t in ts)}
        inners = {n: {i for term in logs for m, i in term[LOG_OF] if m == n} for n in names}
        axes = {n: self.axis(n, per_name[n], len(per_name[n]) + (4 if n in in_logs else 2),
                             exact and (n in rounding or n in in_logs), tuple(sorted(inners[n], key=str)))
                for n in names}
        grid = [dict(self.base, **dict(zip(axes, combo))) for combo in itertools.product(*axes.values())]
        new = [g for g in grid if tuple(sorted(g.items())) not in self.sweep.cache]
        if exact and (rounding or logs) and (len(grid) > MAX_GRID or
                                             len(new) * self.sweep.mean_seconds() > 0.8 * self.sweep.left()):
            self.notes.append(f"an exact fit of the {metric} in floor/ceiling terms needs {len(grid)} sizes; it is "
                              "fitted at powers of two only")
            return None
        values = []
        for g in grid:
            got = self.sweep.try_at(g) if exact and (rounding or logs) else self.at(g)
            if got is None:
                return None
            self.used.append(g)
            values.append((g, got[metric]))
        total = sympy.S.Zero
        for mono in set().union(*[set(c) for _, c in values]):
            got = sparse_fit(basis + logs, [(g, c.get(mono, 0)) for g, c in values])
            if got is None:
                if exact and (rounding or logs):
                    return None
                raise InputError(f"no product of the per-symbol terms fits {self.describe(metric, mono)} jointly in "
                                 f"{', '.join(names)}; the fitted engine cannot describe it")
            total += to_expr(*got) * mono
        return sympy.expand(total)


def _joint_logs(per_name: dict, alternatives: dict) -> list[dict]:
    """ceil(log2(u_1 * u_2 ...)) over every choice of one logarithmic term per symbol (or one that fits its sweep
    as well), for two or more symbols."""
    logs = {n: [t for t in ts if inner_value(t, 2) is not None] for n, ts in per_name.items()}
    logs = {n: ts + sorted(alternatives.get(n, ()), key=str) if ts else [] for n, ts in logs.items()}
    names = [n for n, ts in logs.items() if ts]
    out = []
    for size in range(2, len(names) + 1):
        for subset in itertools.combinations(names, size):
            for choice in itertools.product(*[logs[n] for n in subset]):
                out.append({LOG_OF: tuple(zip(subset, choice))})
    return out if len(out) <= MAX_JOINT_LOGS else []


def fit_sweep(names: list[str], ladders: dict[str, list[int]], base: dict[str, int], sweep: Sweep,
              describe: Callable[[str, object], str], between: dict[str, list[int]] | None = None,
              rounding: bool = True) -> Fitted:
    """Fit every metric in `names` over their ladders (the top rung of each is held out).

    `between[name]`: sizes that are not powers of two, in order of preference, to confirm the fit between powers
    of two (and, with `rounding`, to fit floor/ceiling terms); the first that no fit used are held out.
    Each name is swept alone with the others at `base`; the chosen terms are then solved jointly on a grid.
    `describe(metric, monomial)` names what failed to fit in the error message.
    """
    state = _Fit(names, ladders, base, sweep, describe, between, rounding)
    formulas: dict = {}
    for metric in METRICS:
        per_name = {name: state.symbol_terms(metric, name) for name in names}
        exact = rounding and any(is_rounding(t) or t == (0, 1) for ts in per_name.values() for t in ts)
        formula = state.joint(metric, per_name, exact) if exact else None
        if formula is None and exact and not any(metric in note for note in state.notes):
            state.notes.append(f"no exact joint fit of the {metric} in {', '.join(names)} between powers of two "
                               "(floor/ceiling and logarithm-of-product terms tried); it is fitted at powers of two only")
        formulas[metric] = formula if formula is not None else state.joint(metric, per_name, False)
    heldout, failures = _held_out(state, formulas)
    unique = tuple(dict(t) for t in dict.fromkeys(tuple(sorted(u.items())) for u in state.used))
    return Fitted(formulas, unique, tuple(heldout), not failures, tuple(failures), tuple(state.notes))


def _held_out(state: _Fit, formulas: dict) -> tuple[list, list]:
    names, ladders, base = state.names, state.ladders, state.base
    used = {tuple(sorted(u.items())) for u in state.used}
    heldout = [dict(base, **{n: ladders[n][-1]}) for n in names]
    if len(names) > 1:
        heldout.append(dict(base, **{n: ladders[n][-1] for n in names}))
    picks: dict = {n: [] for n in names}
    for n in names:  # sizes of each symbol alone that no fit used: where a logarithm steps, and between powers of two
        for pool in (state.switches(n), state.between[n]):
            for v in pool:
                sizes = dict(base, **{n: v})
                if v in picks[n] or tuple(sorted(sizes.items())) in used:
                    continue
                if state.sweep.try_at(sizes) is not None:
                    picks[n].append(v)
                    heldout.append(sizes)
                    break
        if not picks[n] and state.between[n]:
            state.notes.append(f"no size of {n} between powers of two could be analysed "
                               f"(tried {', '.join(map(str, state.between[n][:4]))}, ...): the formulas are only "
                               "checked at powers of two")
    if len(names) > 1:
        for i in range(max(len(p) for p in picks.values())):  # all symbols off their ladders together
            together = dict(base, **{n: p[min(i, len(p) - 1)] for n, p in picks.items() if p})
            if state.sweep.try_at(together) is not None:
                heldout.append(together)
    heldout = [h for i, h in enumerate(heldout) if h not in heldout[:i]]
    failures = []
    for sizes in heldout:
        measured = state.sweep.at(sizes)
        subs = {size_symbol(n): sizes[n] for n in names}
        for metric in METRICS:
            fitted = sympy.expand(evaluate(formulas[metric], subs))
            truth = sympy.Add(*[sympy.Rational(c.numerator, c.denominator) * mono for mono, c in measured[metric].items()])
            if sympy.expand(fitted - truth) != 0:
                failures.append((sizes, metric, fitted, truth))
    failures.extend(_not_integers(state, formulas))
    return heldout, failures


def _not_integers(state: _Fit, formulas: dict) -> list:
    """Sizes (no measurement needed) where a fitted formula's coefficient of some monomial is not an integer."""
    checks = []
    for n in state.names:
        lo = min(state.ladders[n])
        for v in sorted(set(state.between[n][:6]) | set(range(lo, lo + 4))):
            checks.append(dict(state.base, **{n: v}))
    out = []
    for sizes in checks:
        subs = {size_symbol(n): sizes[n] for n in state.names}
        for metric in METRICS:
            value = sympy.expand(evaluate(formulas[metric], subs))
            for term in sympy.Add.make_args(value):
                coeff, _ = term.as_coeff_Mul()
                if not coeff.is_Integer:
                    out.append((sizes, metric, value, None))
                    return out
    return out


def coefficients(expr: sympy.Expr, metric: str) -> Coefficients:
    """{monomial in the exact symbols' atoms: rational coefficient} of an expanded formula."""
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
