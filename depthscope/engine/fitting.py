"""The state of one sweep-and-fit (engine/fit.py): per-symbol terms, the joint fit, and the sizes they need.

Per symbol: the smallest set of smooth terms v**a * ceil(log2 v)**c that fits the powers of two, confirmed at
sizes between them; where they disagree, the rounded sizes floor((v + r)/2**k) the graphs' shapes show (each shape
entry that changes with the symbol alone, identified exactly and told apart by measuring where two candidates
differ), with their products and logarithms, fitted from sizes between powers of two. Jointly: products of the
per-symbol terms and logarithms of products of rounded sizes, on a grid of sizes that tells them apart.
"""

from __future__ import annotations

import itertools

import sympy

from depthscope.engine.terms import (LOG_KINDS, LOG_OF, SMOOTH, basis_value, ceil_atom, find_atoms, fits, floor_atom,
                                     independent_columns, inner_value, is_rounding, rounding_family, smooth_equivalent,
                                     sparse_fit, switch_sizes, to_expr)
from depthscope.errors import InputError

CANDIDATES = SMOOTH  # per-symbol smooth terms (power of size, power of ceil(log2 size)), simplest first
MAX_TERMS = 3  # smooth terms per symbol besides the constant
PROBES = 2  # sizes between powers of two that must confirm a smooth fit
MAX_LEVELS = 6  # ceil(v / 2**k) for k up to this
ATOM_POINTS = 8  # sizes between powers of two measured before reading the rounded sizes off the graphs' shapes
SHAPES = "shapes"  # optional key of a measurement: {shape entry: its value} of the graph at that size
EXACT_RESERVE = 0.35  # the share of the time budget kept for the fit at powers of two and the held-out check
MAX_GRID = 160  # sizes in one joint fit at most; a larger exact fit falls back to powers of two (approximate)
RESERVED = 6  # sizes between powers of two per symbol kept out of every fit, for the held-out check
MAX_JOINT_LOGS = 16  # joint ceil(log2(product)) candidates at most


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


class OutOfExactTime(Exception):
    """The part of the budget for sizes between powers of two is spent: fit at powers of two (approximate)."""


class FitState:
    """The state of one fit_sweep call."""

    def __init__(self, names, ladders, base, sweep, describe, between, rounding):
        self.names, self.ladders, self.base, self.sweep = names, ladders, base, sweep
        self.describe, self.rounding = describe, rounding
        self.between = {n: list(between.get(n, ())) for n in names} if between else {n: [] for n in names}
        # the last few sizes between powers of two are kept for the held-out check, whatever the fit needed
        self.reserved = {n: b[-RESERVED:] if len(b) > 3 * RESERVED else [] for n, b in self.between.items()}
        self.between = {n: b[:-len(self.reserved[n])] if self.reserved[n] else b for n, b in self.between.items()}
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

    def check_time(self) -> None:
        """Sizes between powers of two are a refinement: past most of the budget, stop measuring them."""
        if self.sweep.left() < EXACT_RESERVE * self.sweep.budget:
            raise OutOfExactTime()

    def between_points(self, name: str, count: int, metric: str) -> list:
        """Up to `count` measured sizes between powers of two for `name` (others at base)."""
        points = []
        for v in self.between[name]:
            if len(points) >= count:
                break
            if tuple(sorted(dict(self.base, **{name: v}).items())) not in self.sweep.cache:
                self.check_time()
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
            terms = sorted({t for s in smooth.values() for t in s})
            if (0, 1) in terms and name in self.atom_cache:
                # ceil(log2 ceil(v/32)) = ceil(log2 v) - 5: along one symbol the rounded sizes' logarithms are the
                # size's own; in a product with other symbols' they are not, so the joint fit tries them
                self._log_alternatives(metric, name, terms, self.atom_cache[name], self._line_points(name, metric),
                                       replacing=(0, 1))
            return terms
        try:
            found = self._rounding_terms(metric, name, points, smooth)
        except OutOfExactTime:
            self.notes.append(f"the time budget ran out while fitting the {metric} in {name} between powers of two; "
                              "it is fitted at powers of two only")
            return self._smooth_or_refuse(metric, name, smooth)
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
                rounded = (f", nor any sum of floor(({name} + r)/2**k) terms, their products and logarithms at sizes "
                           "between them" if self.rounding else "")
                raise InputError(f"no sum of {name}**a * ceil(log2 {name})**c terms (a <= 3, c <= 2, up to {MAX_TERMS} "
                                 f"terms) fits {self.describe(metric, mono)} over {name} = "
                                 f"{', '.join(map(str, self.ladders[name][:-1]))}{rounded}; the fitted engine cannot "
                                 "describe it")
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
        self.check_time()
        steps = [({name: v}, c) for v in switch[:2 * len(atoms)] for c in [self.sweep.try_at(dict(self.base, **{name: v}))]
                 if c is not None]
        self.used.extend(dict(self.base, **{name: p[name]}) for p, _ in steps)
        points = points + [(p, c[metric]) for p, c in steps]
        if atoms:
            families = [rounding_family(atoms, degree, False), rounding_family(atoms, degree, True)]
        else:
            ceils, floors = [ceil_atom(k) for k in range(1, levels + 1)], [floor_atom(k) for k in range(1, levels + 1)]
            families = [rounding_family(a, degree, logs) for logs in (False, True) for a in (ceils, floors, ceils + floors)]
        for family in families:
            basis = [{}] + [{name: t} for t in base_terms + family]
            want = len(basis) + 2
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

    def _line_points(self, name: str, metric: str) -> list:
        """Every measured size of `name` alone (others at base), as 1-D points."""
        out = []
        for v in sorted(set(self.ladders[name][:-1]) | set(self.between[name]) | set(self.switch.get(name, ()))):
            hit = self.sweep.cache.get(tuple(sorted(dict(self.base, **{name: v}).items())))
            if hit is not None:
                out.append(({name: v}, hit[metric]))
        return out

    def _log_alternatives(self, metric, name, terms, atoms, points, replacing=None) -> None:
        """Other rounded sizes whose logarithm fits the 1-D sweep as well as the chosen one (ceil(log2 floor((v+1)/4))
        = 1 + ceil(log2 floor((v+5)/8)) for v >= 8): alone they are one function, in a product with another
        symbol's size they are not, so the joint fit tries each."""
        found = self.alternatives.setdefault((metric, name), set())
        for t in terms:
            if t != replacing and t[0] not in LOG_KINDS:
                continue
            for atom, kind in itertools.product(atoms, LOG_KINDS if t == replacing else (t[0],)):
                other = (kind, atom)
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
            self.check_time()
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
            inners = [t[1] if t[0] in LOG_KINDS else (0, 0) for t in logs]
            lists = [switch_sizes(a, lo, hi) for a in inners]
            pool = [v for group in itertools.zip_longest(*lists) for v in group if v is not None]
        pool += sorted(v for v in design if v & (v - 1) and v not in pool)  # then other sizes between powers of two
        pool += [v for v in self.between[name] if v not in pool] + sorted(v for v in design if not v & (v - 1))
        pool = list(dict.fromkeys(pool))
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
        logs = joint_logs(per_name, {n: self.alternatives.get((metric, n), set()) for n in names}) if exact else []
        in_logs = {n for term in logs for n, _ in term[LOG_OF]}
        rounding = {n for n, ts in per_name.items() if any(is_rounding(t) for t in ts)}
        inners = {n: {i for term in logs for m, i in term[LOG_OF] if m == n} for n in names}
        axes = {n: self.axis(n, per_name[n], len(per_name[n]) + (4 if n in in_logs else 1 if n in rounding else 2),
                             exact and (n in rounding or n in in_logs), tuple(sorted(inners[n], key=str)))
                for n in names}
        grid = [dict(self.base, **dict(zip(axes, combo))) for combo in itertools.product(*axes.values())]
        new = [g for g in grid if tuple(sorted(g.items())) not in self.sweep.cache]
        spare = self.sweep.left() - EXACT_RESERVE * self.sweep.budget
        if exact and (rounding or logs) and (len(grid) > MAX_GRID or len(new) * self.sweep.mean_seconds() > spare):
            self.notes.append(f"an exact fit of the {metric} in floor/ceiling terms needs {len(grid)} sizes; it is "
                              "fitted at powers of two only")
            return None
        values = []
        for g in grid:
            if exact and (rounding or logs):
                if tuple(sorted(g.items())) not in self.sweep.cache:
                    self.check_time()
                got = self.sweep.try_at(g)
            else:
                got = self.at(g)
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
        return sympy.expand(total, log=False)


def joint_logs(per_name: dict, alternatives: dict) -> list[dict]:
    """ceil(log2(u_1 * u_2 ...)) over every choice of one logarithmic term per symbol (or one that fits its sweep
    as well), for two or more symbols; when those are too many, the products of one rounded size (k, r) in every
    symbol that has it (one tensor's extent: H/32 x W/32), with and without the symbols whose logarithm is of the
    size itself (a batch)."""
    logs = {n: [t for t in ts if inner_value(t, 2) is not None] for n, ts in per_name.items()}
    logs = {n: ts + sorted(alternatives.get(n, set()) - set(ts), key=str) if ts else [] for n, ts in logs.items()}
    names = [n for n, ts in logs.items() if ts]
    out = []
    for size in range(2, len(names) + 1):
        for subset in itertools.combinations(names, size):
            for choice in itertools.product(*[logs[n] for n in subset]):
                out.append({LOG_OF: tuple(zip(subset, choice))})
    if len(out) <= MAX_JOINT_LOGS:
        return out
    out = [{LOG_OF: tuple((n, (0, 1)) for n in names if (0, 1) in logs[n])}] if sum((0, 1) in logs[n] for n in names) > 1 else []
    atoms = sorted({t[1] for ts in logs.values() for t in ts if t[0] in LOG_KINDS}, key=lambda a: (-a[0], a[1]))
    plain = [n for n in names if (0, 1) in logs[n]]
    for atom in atoms:
        having = {n: next(t for t in logs[n] if t[0] in LOG_KINDS and t[1] == atom) for n in names
                  if any(t[0] in LOG_KINDS and t[1] == atom for t in logs[n])}
        for extra in ([], plain):
            members = [n for n in names if n in having or n in extra]
            term = {LOG_OF: tuple((n, having.get(n, (0, 1))) for n in members)}
            if len(members) >= 2 and term not in out:
                out.append(term)
    return out[:2 * MAX_JOINT_LOGS]
