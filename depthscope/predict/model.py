"""Predictions from work and depth for a device profile: Brent's range, burdened depth, speedup, regime.

With W work (FLOP-like ops), D depth (dependent levels) and a profile of P lanes at peak/P FLOP/s each, t seconds
per level and o seconds per op launch:

- T1 = W / (peak/P): one lane doing all the work (Cilkscale's "work"); W/P in Brent's theorem is T1/P = W/peak.
- Brent (greedy scheduling, with level time t): max(W/peak, D*t) <= T_P <= W/peak + D*t.
- Burdened depth (the analogue of Cilkscale's burdened span): D*t + K*o, where K is the number of ops on the
  critical path, each of which pays a launch; the burdened bound is W/peak + D*t + K*o.
- Speedup against p lanes: T1/T_p from the same bounds with p in place of P.
- Regime: the size at which W(n)/peak = D(n)*t, solved over each symbol with the others held.
"""

from __future__ import annotations

import itertools
import json
import re

import sympy

from depthscope.errors import InputError
from depthscope.complexity import big_o
from depthscope.symbols import as_expr, evaluate

SCHEMA = "depthscope.predict/1"
SEARCH_CAP = 2**40  # crossover search limit for a symbol without a max

_AT_LIST = re.compile(r"^([A-Za-z_]\w*)=(\d+(?:,\d+)*)$")


# ---------------------------------------------------------------------------------------------
# Sizes


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
        out[m.group(1)] = sizes
    return out


def complete_sizes(report, given: dict[str, int], defaults: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """Every symbol's size: given, else the example's; returns (sizes, names filled from the example)."""
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
    report.symbol_values(sizes)  # validates names, ranges and completeness
    return sizes, filled


# ---------------------------------------------------------------------------------------------
# Launches on the critical path


def _value(expr, report, sizes: dict[str, int]) -> float:
    return float(evaluate(as_expr(expr), report.symbol_values(sizes)))


def _polynomial_part(expr) -> sympy.Expr:
    """big-O of expr with logarithms dropped: n for 14*n + 16, 1 for 3*ceil(log2 n) + 11."""
    bo = big_o(expr)
    return bo.replace(lambda e: isinstance(e, (sympy.log, sympy.ceiling)), lambda e: sympy.S.One)


def critical_path_launches(report, sizes: dict[str, int]) -> int:
    """K: ops on the critical path at `sizes`, each paying one launch.

    A step that is a sequential loop (depth polynomial in a size: a scan, a while_loop, a recurrent module) pays
    one launch per trip, taken as the polynomial part of its depth's big-O (n for 14*n + 16). For the fitted
    engine, whose critical path is that of one analysed size, K is scaled with the depth when the depth grows
    polynomially.
    """
    steps = report.critical_path
    if not steps:
        return 0
    if report.breakdown_at is not None:
        poly = _polynomial_part(report.depth)
        if not poly.free_symbols:
            return len(steps)
        here = _value(report.depth, report, sizes)
        there = _value(report.depth, report, dict(report.breakdown_at))
        return max(1, round(len(steps) * here / there)) if there > 0 else len(steps)
    total = 0
    for step in steps:
        try:
            poly = _polynomial_part(step.depth)
            total += max(1, round(_value(poly, report, sizes))) if poly.free_symbols else 1
        except Exception:  # noqa: BLE001 - an odd depth form counts as one launch
            total += 1
    return total


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

    Doubling from the symbol's min to its max (or 2**40) finds the first work-bound size; bisection on the
    integers narrows it. Returns {"kind": "crossover"|"work-bound"|"depth-bound", "at": int|None, "range": [lo, hi]}.
    """
    info = report.symbols[symbol]
    lo = info.min
    hi = info.max if info.max is not None else SEARCH_CAP

    def gap(x: int) -> float:
        return _gap(report, profile, {**held, symbol: x}, burdened)

    if gap(lo) >= 0:
        return {"kind": "work-bound", "at": None, "range": [lo, hi], "capped": info.max is None}
    prev, x = lo, lo
    found = None
    while x < hi:
        x = min(hi, max(x + 1, x * 2))
        if gap(x) >= 0:
            found = x
            break
        prev = x
    if found is None:
        return {"kind": "depth-bound", "at": None, "range": [lo, hi], "capped": info.max is None}
    a, b = prev, found  # gap(a) < 0 <= gap(b)
    while b - a > 1:
        mid = (a + b) // 2
        if gap(mid) >= 0:
            b = mid
        else:
            a = mid
    return {"kind": "crossover", "at": b, "range": [lo, hi], "capped": info.max is None}


def _about(x: int) -> str:
    """A crossover rounded to two significant figures, with thousands separators."""
    if x < 100:
        return str(x)
    digits = len(str(x)) - 2
    return f"{round(x, -digits):,}"


def _clause(symbol: str, result: dict, bound: str = "depth-bound") -> str:
    lo, hi = result["range"]
    top = f"2^{hi.bit_length() - 1} (the search limit)" if result.get("capped") else f"{hi:,} (its max)"
    if result["kind"] == "crossover":
        return f"{bound} until {symbol} is about {_about(result['at'])}, then work-bound"
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


def predict(report, profile, points: list[dict[str, int]], over: list[str] | None = None) -> dict:
    """Predictions at each set of sizes, and the regime over each symbol (others held at the last point)."""
    if not points:
        raise InputError("no sizes to predict at")
    results = [point(report, profile, sizes) for sizes in points]
    last = points[-1]
    symbols = over if over else list(report.symbols)
    for name in symbols:
        if name not in report.symbols:
            raise InputError(f"--over {name}: not a size symbol of the model ({', '.join(report.symbols) or 'none'})")
    regimes = []
    for name in symbols:
        held = {k: v for k, v in last.items() if k != name}
        plain = crossover(report, profile, name, held, burdened=False)
        burdened = crossover(report, profile, name, held, burdened=True)
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
        "work": str(report.work),
        "depth": str(report.depth),
        "profile": profile.to_dict(),
        "points": results,
        "regimes": regimes,
    }


def expand_points(lists: dict[str, list[int]]) -> list[dict[str, int]]:
    """The cartesian product of per-symbol size lists, in the order given."""
    names = list(lists)
    return [dict(zip(names, combo)) for combo in itertools.product(*(lists[n] for n in names))]


# ---------------------------------------------------------------------------------------------
# Rendering


def seconds(s: float | None) -> str:
    """1.23 s, 4.56 ms, 7.89 µs, 12.3 ns."""
    if s is None:
        return "-"
    a = abs(s)
    if a == 0:
        return "0 s"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if a >= scale or unit == "ns":
            return f"{s / scale:.3g} {unit}"
    return f"{s:.3g} s"  # pragma: no cover


def flops(f: float) -> str:
    for unit, scale in (("PFLOP/s", 1e15), ("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
        if f >= scale:
            return f"{f / scale:.3g} {unit}"
    return f"{f:.3g} FLOP/s"


def _speed(x) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 1000 else f"{x:.3g}"


def _num(x) -> str:
    from depthscope.report.common import human

    return human(float(x)) if x is not None else "-"


def profile_line(profile: dict) -> str:
    return (f"profile {profile['name']}: {profile['description'] or 'from a file'}; peak {flops(profile['peak_flops'])}, "
            f"P = {profile['processors']:,} lanes, t = {seconds(profile['level_time_s'])} per level, "
            f"o = {seconds(profile['launch_overhead_s'])} per launch")


def sections(result: dict, tablefmt: str) -> list[tuple[str, str]]:
    from tabulate import tabulate

    out = []
    head = ["sizes", "work W", "depth D", "path ops K", "T1 (1 lane)", "W/peak", "D*t", "Brent range T_P",
            "burdened W/peak+D*t+K*o", "bound"]
    rows = []
    for p in result["points"]:
        label = ", ".join(f"{k}={v}" for k, v in p["sizes"].items()) or "concrete"
        bound = p["bound"] + ("" if p["burdened_bound"] == p["bound"] else f" ({p['burdened_bound']} when burdened)")
        rows.append([label, _num(p["work"]), _num(p["depth"]), p["critical_path_ops"], seconds(p["t1_s"]),
                     seconds(p["work_term_s"]), seconds(p["depth_term_s"]),
                     f"{seconds(p['brent_lower_s'])} .. {seconds(p['brent_upper_s'])}",
                     seconds(p["burdened_upper_s"]), bound])
    out.append((f"{result['model']} on {result['profile']['name']}: predicted time per forward call "
                f"(engine {result['engine']}, {result['mode']})", tabulate(rows, head, tablefmt=tablefmt)))
    shown = result["points"] if len(result["points"]) <= 2 else result["points"][-1:]
    for p in shown:
        label = ", ".join(f"{k}={v}" for k, v in p["sizes"].items()) or "concrete"
        srows = []
        for r in p["speedup"]:
            srows.append([f"{r['p']:,}", f"{seconds(r['lower_s'])} .. {seconds(r['upper_s'])}",
                          f"{_speed(r['speedup_min'])} .. {_speed(r['speedup_max'])}", _speed(r["burdened_speedup"])])
        out.append((f"speedup T1/T_p against p lanes at {label} (parallelism W/D = {_num(p['parallelism'])})",
                    tabulate(srows, ["p", "T_p (Brent)", "speedup", "burdened speedup"], tablefmt=tablefmt,
                             disable_numparse=True)))
    return out


def render_table(result: dict) -> str:
    parts = [profile_line(result["profile"])]
    for title, table in sections(result, "simple"):
        parts.append(f"{title}\n{table}")
    parts.append("regime\n" + "\n".join(r["sentence"] for r in result["regimes"]) if result["regimes"] else
                 "regime: the model has no size symbols")
    return "\n\n".join(parts) + "\n"


def render_markdown(result: dict) -> str:
    parts = [f"# depthscope prediction: {result['model']} on {result['profile']['name']}", profile_line(result["profile"])]
    for title, table in sections(result, "github"):
        parts.append(f"## {title}\n\n{table}")
    parts.append("## regime\n\n" + ("\n".join(f"- {r['sentence']}" for r in result["regimes"])
                                    or "The model has no size symbols."))
    src = result["profile"].get("sources") or {}
    if src:
        parts.append("## profile sources\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in src.items()))
    return "\n\n".join(parts) + "\n"


def render(result: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result, indent=2) + "\n"
    if fmt == "markdown":
        return render_markdown(result)
    return render_table(result)


# ---------------------------------------------------------------------------------------------
# Command


def _command():
    import click

    @click.command("predict")
    @click.argument("path", type=click.Path(dir_okay=False))
    @click.option("--at", "at", multiple=True, metavar="NAME=INT[,INT...]",
                  help="Sizes to predict at (repeat per symbol; a list gives one row per combination). "
                       "Symbols not given take their size in the example inputs.")
    @click.option("--device-profile", "device_profile", default="h100", show_default=True, metavar="h100|a100|cpu|FILE.toml",
                  help="Built-in profile or a TOML file (peak_flops, processors, level_time_s, launch_overhead_s).")
    @click.option("--over", "over", multiple=True, metavar="NAME",
                  help="Solve the regime crossover over these symbols only (default: every symbol).")
    @click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
    @click.option("--train", is_flag=True, help="Predict a training step: forward plus backward of the loss.")
    @click.option("--engine", type=click.Choice(["auto", "symbolic", "fitted"]), default="auto", show_default=True)
    @click.option("--debug", is_flag=True, help="Show tracebacks.")
    def predict_command(path, at, device_profile, over, fmt, train, engine, debug):
        """Predict time for the model file PATH on a device: Brent's range, burdened depth, speedup, regime."""
        from depthscope.pipeline import analyze_spec
        from depthscope.capture.dims import example_sizes
        from depthscope.model_file import load_model_file

        profile = load_profile_arg(device_profile)
        lists = parse_sizes(at)
        spec = load_model_file(path)
        report = analyze_spec(spec, train=train, engine=engine,
                              on_fallback=lambda reason: click.echo(f"depthscope: {reason}", err=True))
        defaults = example_sizes(spec)
        points = []
        for combo in expand_points(lists) or [{}]:
            sizes, filled = complete_sizes(report, combo, defaults)
            points.append(sizes)
        if filled:
            click.echo("depthscope: sizes from the example inputs: "
                       + ", ".join(f"{k}={points[-1][k]}" for k in filled), err=True)
        result = predict(report, profile, points, list(over) or None)
        click.echo(render(result, fmt), nl=False)

    return predict_command


def load_profile_arg(value: str):
    from depthscope.predict.profiles import load_profile

    return load_profile(value)


predict_command = _command()
