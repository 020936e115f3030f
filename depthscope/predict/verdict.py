"""The verdict of `depthscope validate` in plain words: do the fits explain the measured times, and what drives them."""

from __future__ import annotations

from depthscope.predict.units import number, seconds, slope_text

EXPLAINED_R2 = 0.9  # both R^2 (time) and R^2 (log time) at least this: the model explains the measurements


def verdict(result: dict) -> dict:
    """Plain words: does alpha*W + beta*D + gamma explain the measured times, and what dominates."""
    pts, fit, sym = result["points"], result["fit"], result["symbol"]
    if fit is None:
        return {"explained": None, "text": f"Only {len(pts)} size(s) timed: too few to fit alpha*W + beta*D + gamma "
                                           "(need 3 or more)."}
    r2, r2l = fit["r2"], fit["r2_log"]
    explained = r2 is not None and r2l is not None and r2 >= EXPLAINED_R2 and r2l >= EXPLAINED_R2
    r2_text = f"R^2 = {r2:.3f} on time, {r2l:.3f} on log time" if r2 is not None and r2l is not None else \
        "R^2 undefined (no spread in the measurements)"
    lines = []
    if explained:
        lines.append(f"The work-depth model explains these measurements: time = alpha*W + beta*D + gamma fits with {r2_text}.")
    else:
        lines.append(f"The work-depth model does NOT explain these measurements: the best fit of alpha*W + beta*D + gamma "
                     f"gives {r2_text}.")
    lines += bytes_fit_lines(result)
    s = result["slopes"]
    lines.append(f"Measured time grows like {sym}^{slope_text(s['measured']['tail'])} over the largest sizes "
                 f"({sym}^{slope_text(s['measured']['all'])} over all); work grows like {sym}^{slope_text(s['work']['tail'])}, "
                 f"depth like {sym}^{slope_text(s['depth']['tail'])}, and the {result['profile']['name']} profile's "
                 f"burdened bound like {sym}^{slope_text(s['predicted']['tail'])}.")
    ms, ws = s["measured"]["tail"], s["work"]["tail"]
    if ms is not None and ws is not None and ws - ms > 0.5:
        lines.append(f"Time grows more slowly than work at these sizes: fixed per-call costs still dominate; larger "
                     f"sizes would show whether the work term takes over.")
    elif ms is not None and ws is not None and ms - ws > 0.5:
        lines.append("Time grows faster than work: something the model does not count (memory traffic, cache misses, "
                     "allocation) grows with size.")
    if fit["alpha_s_per_op"] == 0:
        lines.append("The fit gives work no weight: the counted work does not drive the time here.")
    dmin, dmax = min(p["depth"] for p in pts), max(p["depth"] for p in pts)
    if dmax < 2 * dmin:
        lines.append(f"Depth barely changes over these sizes ({number(dmin)} to {number(dmax)} levels), so the fit cannot "
                     "tell beta*D from the constant gamma; read beta and beta/alpha with care.")
    t_min = min(p["median_s"] for p in pts)
    if fit["gamma_s"] > 0.5 * t_min:
        lines.append(f"A fixed cost of {seconds(fit['gamma_s'])} per call is over half the time at the smallest size.")
    last = pts[-1]
    bound = last["predicted"]["burdened_upper_s"]
    if bound > 0:
        ratio = last["median_s"] / bound
        rel = "slower than" if ratio >= 1 else "faster than"
        lines.append(f"At {sym}={last['size']} the measured {seconds(last['median_s'])} is {ratio:.3g}x the profile's "
                     f"burdened bound {seconds(bound)} ({rel} the bound"
                     + (": the profile overstates the device or the model's real cost includes more than W and D)."
                        if ratio < 1 else ")."))
    return {"explained": explained, "text": " ".join(lines)}


TERM_WORDS = {"W": "work", "Q": "bytes", "D": "depth", "K": "launches"}


def r2_words(fit: dict) -> str:
    """'R^2 = 0.995 (0.999 on log time)', with '-' for an undefined one."""
    def f(x):
        return "-" if x is None else f"{x:.3f}"

    return f"R^2 = {f(fit['r2'])} ({f(fit['r2_log'])} on log time)"


def bytes_fit_lines(result: dict) -> list[str]:
    """Which of W, Q, D, K explain the times (non-zero coefficient, share of the fitted time), and both R^2."""
    full, work = result.get("fit_bytes"), result.get("fit_work")
    if not full:
        return []
    named = [f"{TERM_WORDS[t['term']]} {t['term']} ({100 * t['share']:.0f}% of the fitted time)"
             for t in full["terms"] if t["term"] in full["explained_by"]]
    left = [f"{TERM_WORDS[t['term']]}" for t in full["terms"] if t["term"] not in full["explained_by"]]
    text = (f"With bytes and launches, time = alpha*W + beta*Q + gamma*D + delta*K fits with {r2_words(full)}; "
            f"the terms that explain it: {', '.join(named) or 'none'}")
    text += f" ({', '.join(left)} get no weight or under 1%)." if left else "."
    lines = [text, f"Work alone (time = alpha*W) fits with {r2_words(work)}."]
    fixed = [f"{TERM_WORDS[key]} {key}" for key, name in (("D", "depth"), ("K", "launches"))
             if len({p[name] for p in result["points"]}) == 1]
    if len(fixed) == 2:
        lines.append(f"{' and '.join(fixed)} do not change over these sizes, so the fit cannot tell them apart: "
                     "either stands for the same per-call constant.")
    if None not in (work["r2"], full["r2"]) and work["r2"] > full["r2"]:
        lines.append("The fits minimise relative errors, not the squared errors R^2 measures, so the fit with more "
                     "terms can have the lower R^2 on time.")
    return lines
