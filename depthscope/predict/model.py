"""Predictions from work and depth for a device profile: Brent's range, burdened depth, speedup, regime.

With W work (FLOP-like ops), D depth (dependent levels) and a profile of P lanes at peak/P FLOP/s each, t seconds
per level and o seconds per op launch:

- T1 = W / (peak/P): one lane doing all the work (Cilkscale's "work"); W/P in Brent's theorem is T1/P = W/peak.
- Brent (greedy scheduling, with level time t): max(W/peak, D*t) <= T_P <= W/peak + D*t.
- Burdened depth (the analogue of Cilkscale's burdened span): D*t + K*o, where K is the number of ops on the
  critical path, each of which pays a launch; the burdened bound is W/peak + D*t + K*o.
- Speedup against p lanes: T1/T_p from the same bounds with p in place of P.
- Regime: the size at which W(n)/peak = D(n)*t, solved over each symbol with the others held.

With a memory bandwidth in the profile, each point also gets the roofline with depth and launches
(depthscope.predict.roofline) and each symbol its roofline regime.
"""

from __future__ import annotations

from depthscope.errors import InputError
from depthscope.predict.launches import critical_path_launches
from depthscope.predict.regimes import SEARCH_CAP, about, regime_changes, upper_end
from depthscope.predict.roofline import NodeTable, roofline_point, roofline_regime

SCHEMA = "depthscope.predict/2"  # 2: the roofline (bytes, bandwidth, one stream, its regimes)


# ---------------------------------------------------------------------------------------------
# Predictions


def speedup_ps(processors: int) -> list[int]:
    """1, 4, 16, ... up to P, and P itself."""
    ps, p = [], 1
    while p < processors:
        ps.append(p)
        p *= 4
    ps.append(processors)
    return ps


def point(report, profile, sizes: dict[str, int]) -> dict:
    """Brent's range, burdened depth and the speedup table at one set of sizes (times in seconds)."""
    values = report.evaluate(**sizes)
    work, depth = values["work"], values["depth"]
    launches = critical_path_launches(report, sizes)
    t1 = work / profile.lane_flops
    work_term = work / profile.peak_flops
    depth_term = depth * profile.level_time_s
    launch_term = launches * profile.launch_overhead_s
    burdened = depth_term + launch_term
    rows = []
    for p in speedup_ps(profile.processors):
        lo = max(t1 / p, depth_term)
        hi = t1 / p + depth_term
        bh = hi + launch_term
        rows.append({
            "p": p,
            "lower_s": lo,
            "upper_s": hi,
            "burdened_upper_s": bh,
            "speedup_min": t1 / hi if hi else None,
            "speedup_max": t1 / lo if lo else None,
            "burdened_speedup": t1 / bh if bh else None,
        })
    return {
        "sizes": dict(sizes),
        "work": work,
        "depth": depth,
        "parallelism": values["parallelism"],
        "critical_path_ops": launches,
        "t1_s": t1,
        "work_term_s": work_term,
        "depth_term_s": depth_term,
        "launch_term_s": launch_term,
        "brent_lower_s": max(work_term, depth_term),
        "brent_upper_s": work_term + depth_term,
        "burdened_depth_s": burdened,
        "burdened_upper_s": work_term + burdened,
        "bound": "work" if work_term >= depth_term else "depth",
        "burdened_bound": "work" if work_term >= burdened else ("launch" if launch_term >= depth_term else "depth"),
        "speedup": rows,
    }


def _gap(report, profile, sizes: dict[str, int], burdened: bool) -> float:
    """W/peak minus the depth term (plus launches if burdened): >= 0 means work-bound."""
    values = report.evaluate(**sizes)
    rhs = values["depth"] * profile.level_time_s
    if burdened:
        rhs += critical_path_launches(report, sizes) * profile.launch_overhead_s
    return values["work"] / profile.peak_flops - rhs


def crossover(report, profile, symbol: str, held: dict[str, int], burdened: bool = False) -> dict:
    """The smallest size of `symbol` at which W/peak >= D*t (+ K*o if burdened), the others held.

    Scans doubling sizes from the symbol's min to its max (or 2**40) and bisects on the integers
    (depthscope.predict.regimes). Returns {"kind": "crossover"|"work-bound"|"depth-bound", "at", "range", "capped"}.
    """
    info = report.symbols[symbol]
    lo = info.min
    hi = info.max if info.max is not None else SEARCH_CAP

    def label(x: int) -> str:
        return "work" if _gap(report, profile, {**held, symbol: x}, burdened) >= 0 else "depth"

    first, changes = regime_changes(label, lo, hi, until="work")
    out = {"range": [lo, hi], "capped": info.max is None}
    if first == "work":
        return {"kind": "work-bound", "at": None, **out}
    at = next((x for x, name in changes if name == "work"), None)
    return {"kind": "crossover" if at is not None else "depth-bound", "at": at, **out}


def _clause(symbol: str, result: dict, bound: str = "depth-bound") -> str:
    lo, hi = result["range"]
    top = upper_end(hi, result.get("capped"))
    if result["kind"] == "crossover":
        return f"{bound} until {symbol} is about {about(result['at'])}, then work-bound"
    if result["kind"] == "work-bound":
        return f"work-bound at every {symbol} from {lo:,} on"
    return f"{bound} for every {symbol} up to {top}"


def regime_sentence(symbol: str, held: dict[str, int], plain: dict, burdened: dict) -> str:
    """'Over n (holding b=8): depth-bound until n is about 110, then work-bound; counting launch overheads ...'."""
    hold = f" (holding {', '.join(f'{k}={v}' for k, v in held.items())})" if held else ""
    text = f"Over {symbol}{hold}: {_clause(symbol, plain)}"
    if (burdened["kind"], burdened["at"]) != (plain["kind"], plain["at"]):
        text += f"; counting launch overheads (burdened depth), {_clause(symbol, burdened, 'depth- and launch-bound')}"
    return text + "."


def concrete_point(analysis, profile, sizes: dict[str, int]) -> dict:
    """point() of the Analysis that evaluates `sizes`; a concrete capture's (sizes below a Dim's min) says so."""
    out = point(analysis, profile, sizes)
    if analysis.provenance.concrete_at is not None:
        out["concrete_at"] = dict(analysis.provenance.concrete_at)
        out["concrete_formulas"] = {"work": str(analysis.work), "depth": str(analysis.depth)}
    return out


def predict(report, profile, points: list[dict[str, int]], over: list[str] | None = None, at=None) -> dict:
    """Predictions at each set of sizes, and the regime over each symbol (others held at the last point).

    `at(sizes)` gives the Analysis for sizes below a Dim's min (pipeline.analysis_at); default `report` itself."""
    if not points:
        raise InputError("no sizes to predict at")
    at = at or (lambda sizes: report)
    results = [concrete_point(at(sizes), profile, sizes) for sizes in points]
    last = points[-1]
    symbols = over if over else list(report.symbols)
    for name in symbols:
        if name not in report.symbols:
            raise InputError(f"--over {name}: not a size symbol of the model ({', '.join(report.symbols) or 'none'})")
    tables: dict = {}

    def table_at(sizes):
        """The per-node roofline table of the Analysis that evaluates `sizes` (a concrete capture's below a min)."""
        analysis = at(sizes)
        if id(analysis) not in tables:
            tables[id(analysis)] = (analysis, NodeTable(analysis, profile))
        return tables[id(analysis)][1]

    roofline = bool(profile.memory_bandwidth)
    for result, sizes in zip(results, points):
        result["roofline"] = roofline_point(table_at(sizes), sizes) if roofline else None
    roofline_regimes = [roofline_regime(table_at(held), name, held)
                        for name in symbols
                        for held in [{k: v for k, v in last.items() if k != name}]] if roofline else []
    regimes = []
    for name in symbols:
        held = {k: v for k, v in last.items() if k != name}
        analysis = at(held)  # a concrete capture's when another symbol is held below its min
        plain = crossover(analysis, profile, name, held, burdened=False)
        burdened = crossover(analysis, profile, name, held, burdened=True)
        regimes.append({
            "symbol": name,
            "held": held,
            "range": plain["range"],
            "kind": plain["kind"],
            "crossover": plain["at"],
            "burdened_kind": burdened["kind"],
            "burdened_crossover": burdened["at"],
            "sentence": regime_sentence(name, held, plain, burdened),
        })
    return {
        "schema": SCHEMA,
        "model": report.model,
        "engine": report.engine,
        "mode": report.mode,
        "exactness": report.exactness,
        "provenance": report.provenance.to_dict(),
        "unmodeled": [{"op": op, "count": count} for op, count in report.unmodeled],
        "work": str(report.work),
        "depth": str(report.depth),
        "bytes": str(report.bytes),
        "profile": profile.to_dict(),
        "points": results,
        "regimes": regimes,
        "roofline_regimes": roofline_regimes,
    }
