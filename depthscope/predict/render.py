"""Text for predict and validate results: the table, markdown and json renderers."""

from __future__ import annotations

import json

from depthscope.predict.roofline_text import profile_roof_line, roofline_regime_lines, roofline_sections
from depthscope.predict.units import flops, number, seconds, size_bytes, slope_text, speed

ROOF_REGIME = "roofline with depth and launches, one stream: the largest part of T"
BRENT_REGIME = "work against depth, Brent's range"


# ---------------------------------------------------------------------------------------------
# depthscope predict


def profile_line(profile: dict) -> str:
    return (f"profile {profile['name']}: {profile['description'] or 'from a file'}; peak {flops(profile['peak_flops'])}, "
            f"P = {profile['processors']:,} lanes, t = {seconds(profile['level_time_s'])} per level, "
            f"o = {seconds(profile['launch_overhead_s'])} per launch; {profile_roof_line(profile)}")


def trust_sections(result: dict) -> list[tuple[str, str]]:
    """A warning section when the analysis behind the times is approximate (unmodeled ops, a failed fit)."""
    if result.get("exactness") != "approximate":
        return []
    reasons = result.get("provenance", {}).get("reasons") or ["see depthscope analyze"]
    return [("WARNING: the work and depth behind these times are approximate", "\n".join(reasons))]


def prediction_sections(result: dict, tablefmt: str) -> list[tuple[str, str]]:
    from tabulate import tabulate

    out = []
    head = ["sizes", "work W", "depth D", "path ops K", "T1 (1 lane)", "W/peak", "D*t", "Brent range T_P",
            "burdened W/peak+D*t+K*o", "bound"]
    rows = []
    for p in result["points"]:
        label = ", ".join(f"{k}={v}" for k, v in p["sizes"].items()) or "concrete"
        if p.get("concrete_at"):  # below a Dim's min: counted by a concrete capture (pipeline.analysis_at)
            label += " (concrete capture)"
        bound = p["bound"] + ("" if p["burdened_bound"] == p["bound"] else f" ({p['burdened_bound']} when burdened)")
        rows.append([label, number(p["work"]), number(p["depth"]), p["critical_path_ops"], seconds(p["t1_s"]),
                     seconds(p["work_term_s"]), seconds(p["depth_term_s"]),
                     f"{seconds(p['brent_lower_s'])} .. {seconds(p['brent_upper_s'])}",
                     seconds(p["burdened_upper_s"]), bound])
    out.append((f"{result['model']} on {result['profile']['name']}: predicted time per forward call "
                f"(engine {result['engine']}, {result['mode']}, {result.get('exactness', 'exact')})",
                tabulate(rows, head, tablefmt=tablefmt)))
    out += trust_sections(result)
    shown = result["points"] if len(result["points"]) <= 2 else result["points"][-1:]
    for p in shown:
        label = ", ".join(f"{k}={v}" for k, v in p["sizes"].items()) or "concrete"
        srows = []
        for r in p["speedup"]:
            srows.append([f"{r['p']:,}", f"{seconds(r['lower_s'])} .. {seconds(r['upper_s'])}",
                          f"{speed(r['speedup_min'])} .. {speed(r['speedup_max'])}", speed(r["burdened_speedup"])])
        out.append((f"speedup T1/T_p against p lanes at {label} (parallelism W/D = {number(p['parallelism'])})",
                    tabulate(srows, ["p", "T_p (Brent)", "speedup", "burdened speedup"], tablefmt=tablefmt,
                             disable_numparse=True)))
    return out


def render_prediction_table(result: dict) -> str:
    parts = [profile_line(result["profile"])]
    for title, table in roofline_sections(result, "simple") + prediction_sections(result, "simple"):
        parts.append(f"{title}\n{table}")
    if not result["regimes"]:
        parts.append("regime: the model has no size symbols")
    else:
        roof = roofline_regime_lines(result)
        if roof:
            parts.append(f"regime ({ROOF_REGIME})\n" + "\n".join(roof))
        parts.append(f"regime ({BRENT_REGIME})\n" + "\n".join(r["sentence"] for r in result["regimes"]))
    if result.get("plot"):
        parts.append(f"plot: {result['plot']}")
    return "\n\n".join(parts) + "\n"


def render_prediction_markdown(result: dict) -> str:
    parts = [f"# depthscope prediction: {result['model']} on {result['profile']['name']}", profile_line(result["profile"])]
    for title, table in roofline_sections(result, "github") + prediction_sections(result, "github"):
        parts.append(f"## {title}\n\n{table}")
    roof = roofline_regime_lines(result)
    if roof:
        parts.append(f"## regime ({ROOF_REGIME})\n\n" + "\n".join(f"- {line}" for line in roof))
    parts.append(f"## regime ({BRENT_REGIME})\n\n" + ("\n".join(f"- {r['sentence']}" for r in result["regimes"])
                                                    or "The model has no size symbols."))
    src = result["profile"].get("sources") or {}
    if src:
        parts.append("## profile sources\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in src.items()))
    return "\n\n".join(parts) + "\n"


def render_prediction(result: dict, fmt: str) -> str:
    """A `depthscope predict` result as table, markdown or json text."""
    if fmt == "json":
        return json.dumps(result, indent=2) + "\n"
    if fmt == "markdown":
        return render_prediction_markdown(result)
    return render_prediction_table(result)


# ---------------------------------------------------------------------------------------------
# depthscope validate


def validation_sections(result: dict, tablefmt: str) -> list[tuple[str, str]]:
    from tabulate import tabulate

    from depthscope.report.common import human

    sym = result["symbol"]
    rows = []
    for p in result["points"]:
        pr = p["predicted"]
        size = f"{p['size']} (concrete capture)" if p.get("concrete_at") else p["size"]  # pipeline.analysis_at
        rows.append([size, human(p["work"]), size_bytes(p["bytes"]), human(p["depth"]), p["launches"],
                     seconds(p["median_s"]), seconds(p["iqr_s"]), p["repeats"], p["number"],
                     seconds(pr.get("fit_s")) if "fit_s" in pr else "-",
                     seconds(pr.get("fit_bytes_s")) if "fit_bytes_s" in pr else "-",
                     f"{seconds(pr['brent_lower_s'])} .. {seconds(pr['brent_upper_s'])}", seconds(pr["burdened_upper_s"]),
                     seconds(pr.get("roofline_s"))])
    held = ", ".join(f"{k}={v}" for k, v in result["held"].items())
    title = (f"{result['model']} on {result['device_name']} ({result['threads']} thread(s), torch {result['torch']}): "
             f"time per forward call over {sym}" + (f", holding {held}" if held else ""))
    prof = result["profile"]["name"]
    out = [(title, tabulate(rows, [sym, "work W", "bytes Q", "depth D", "launches K", "median", "IQR", "repeats",
                                   "calls/block", "fit W,D,1", "fit W,Q,D,K", f"Brent range ({prof})",
                                   "burdened bound", f"roofline T ({prof})"],
                            tablefmt=tablefmt, disable_numparse=True))] + trust_sections(result)
    fit = result["fit"]
    if fit:
        frows = [
            ["alpha (s per unit of work)", f"{fit['alpha_s_per_op']:.4g}"],
            ["beta (s per level of depth)", f"{fit['beta_s_per_level']:.4g}"],
            ["gamma (s per call)", f"{fit['gamma_s']:.4g}"],
            ["R^2 (time)", "-" if fit["r2"] is None else f"{fit['r2']:.4f}"],
            ["R^2 (log time)", "-" if fit["r2_log"] is None else f"{fit['r2_log']:.4f}"],
            ["achieved rate 1/alpha", "-" if fit["achieved_flops"] is None else flops(fit["achieved_flops"])],
            ["effective parallelism beta/alpha", "-" if fit["effective_parallelism"] is None
             else human(fit["effective_parallelism"])],
            ["profile lanes equivalent", "-" if fit["profile_lanes_equivalent"] is None
             else f"{fit['profile_lanes_equivalent']:.3g} of {result['profile']['processors']:,}"],
            ["solver", fit["method"]],
        ]
        out.append(("fit: time = alpha*W + beta*D + gamma (non-negative least squares, relative errors)",
                    tabulate(frows, ["", "value"], tablefmt=tablefmt, disable_numparse=True)))
    out += bytes_fit_sections(result, tablefmt)
    s = result["slopes"]
    srows = []
    for key, label in (("measured", "measured"), ("fit", "fit"), ("predicted", "profile burdened bound"),
                       ("brent_upper", "profile Brent upper"), ("work", "work W"), ("depth", "depth D")):
        if s.get(key) and (s[key]["all"] is not None or s[key]["tail"] is not None):
            srows.append([label, slope_text(s[key]["all"]), slope_text(s[key]["tail"])])
    if srows:
        out.append((f"slope of log T against log {sym}", tabulate(srows, ["", "all sizes", "largest sizes"],
                                                                  tablefmt=tablefmt, disable_numparse=True)))
    return out


def render_validation(result: dict, fmt: str) -> str:
    """A `depthscope validate` result as table, markdown or json text."""
    if fmt == "json":
        return json.dumps(result, indent=2) + "\n"
    md = fmt == "markdown"
    parts = [f"# depthscope validation: {result['model']}"] if md else []
    for title, table in validation_sections(result, "github" if md else "simple"):
        parts.append(f"## {title}\n\n{table}" if md else f"{title}\n{table}")
    parts.append(("**verdict:** " if md else "verdict: ") + result["verdict"]["text"])
    if result["stopped_early"]:
        parts.append(("**stopped early:** " if md else "stopped early: ") + result["stop_reason"])
    if result.get("plot"):
        parts.append(f"plot: {result['plot']}")
    parts.append(f"{len(result['sizes'])} of {len(result['requested_sizes'])} sizes timed in {result['elapsed_s']:.1f} s")
    return "\n\n".join(parts) + "\n"


UNITS = {"W": "s per unit of work", "Q": "s per byte", "D": "s per level of depth", "K": "s per launch"}


def bytes_fit_sections(result: dict, tablefmt: str) -> list[tuple[str, str]]:
    """The fit with bytes and launches: each term's coefficient and share; the three fits' R^2 side by side."""
    from tabulate import tabulate

    full = result.get("fit_bytes")
    if not full:
        return []
    rows = [[f"{name} ({t['term']})", UNITS[t["term"]], f"{t['coefficient']:.4g}", f"{100 * t['share']:.1f}%",
             f"{100 * t['share_at_largest']:.1f}%", "yes" if t["term"] in full["explained_by"] else "no"]
            for t, name in zip(full["terms"], ("alpha", "beta", "gamma", "delta"))]
    title = "fit with bytes: time = alpha*W + beta*Q + gamma*D + delta*K (Q bytes, K launches; NNLS, relative errors)"
    out = [(title, tabulate(rows, ["coefficient", "unit", "value", "share (mean)", "share (largest size)", "explains"],
                            tablefmt=tablefmt, disable_numparse=True))]
    if full.get("note"):
        out.append(("solver", full["note"]))

    def r2(x):
        return "-" if x is None else f"{x:.4f}"

    fits = [("time = alpha*W (work only)", result.get("fit_work")),
            ("time = alpha*W + beta*D + gamma (work and depth)", result.get("fit")),
            ("time = alpha*W + beta*Q + gamma*D + delta*K (with bytes)", full)]
    rows = [[label, r2(f["r2"]), r2(f["r2_log"])] for label, f in fits if f]
    out.append(("R^2 of each fit", tabulate(rows, ["fit", "R^2 (time)", "R^2 (log time)"], tablefmt=tablefmt,
                                            disable_numparse=True)))
    return out
