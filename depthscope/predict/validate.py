"""`depthscope validate`: time the model at a sweep of sizes and test the work-depth model against the clock.

For each size the example inputs are rebuilt at that size (floats random, integer inputs within the example's
value range so embedding indices stay valid), the model runs a few warm-up calls, and torch.utils.benchmark
times blocks of calls (synchronised on CUDA). Measured medians are fitted to alpha*W + beta*D + gamma with
non-negative least squares (relative errors: each size weighs the same whatever its time), and compared with the
device profile's Brent range and with the growth of W and D.
"""

from __future__ import annotations

import time

from depthscope.errors import InputError
from depthscope.predict.fit import fit_time, slopes
from depthscope.predict.model import critical_path_launches, point
from depthscope.predict.render import number, seconds, slope_text
from depthscope.predict.sizes import complete_sizes
from depthscope.predict.timing import (
    check_device,
    default_profile,
    estimate_seconds,
    progress_bar,
    time_call,
    to_device,
)

SCHEMA = "depthscope.validate/1"
MIN_REPEATS_KEPT = 3  # a size cut short by --max-seconds is kept if it has this many blocks
EXPLAINED_R2 = 0.9  # both R^2 (time) and R^2 (log time) at least this: the model explains the measurements


# ---------------------------------------------------------------------------------------------
# The sweep


def run_validation(path: str, symbol: str, values: list[int], *, held: dict[str, int] | None = None,
                   device: str = "cpu", repeats: int = 7, max_seconds: float | None = None,
                   profile=None, engine: str = "auto", progress: bool = True, on_note=None,
                   threads: int | None = None, symbolic=None) -> dict:
    """Time the model at each size of `symbol` (the others held) and fit the measurements; a JSON-ready dict."""
    import torch

    from depthscope.pipeline import analysis_at, analyze_subject, load_subject

    if repeats < 1:
        raise InputError("--repeats must be at least 1")
    if max_seconds is not None and max_seconds <= 0:
        raise InputError("--max-seconds must be positive")
    device_name = check_device(device)
    if threads is not None:
        if threads < 1:
            raise InputError("--threads must be at least 1")
        torch.set_num_threads(threads)
    subject = load_subject(path, symbolic)
    report = analyze_subject(subject, engine=engine, on_fallback=on_note)
    if symbol not in report.symbols:
        known = ", ".join(report.symbols) or "none (the model has no dynamic dims)"
        raise InputError(f"--sizes {symbol}=...: unknown size symbol {symbol!r}; the model's symbols are: {known}")
    if profile is None:
        profile = default_profile(device, device_name)
    examples = subject.example_sizes()
    base, _ = complete_sizes(report, {**(held or {}), symbol: values[0]}, examples)
    held = {k: v for k, v in base.items() if k != symbol}
    points = [{**held, symbol: v} for v in values]
    analyses = []  # each size's Analysis: below a Dim's min, a concrete capture's (pipeline.analysis_at)
    for sizes in points:
        analysis, text = analysis_at(subject, report, sizes, engine=engine, on_fallback=on_note)
        analysis.symbol_values(sizes)  # every size inside the proved range, before any timing
        if text and on_note is not None and not any(a is analysis for a in analyses):
            on_note(f"note: {text}")
        analyses.append(analysis)
    if examples and symbol not in examples:
        raise InputError(f"--sizes {symbol}=...: {symbol} is not a dim of the example inputs, so inputs cannot be "
                         "rebuilt at its sizes")

    model = None if subject.hyper else subject.spec.model.eval().to(device)
    bar = progress_bar(len(points), symbol) if progress else None
    start = time.monotonic()
    deadline = start + max_seconds if max_seconds is not None else None
    done: list[dict] = []
    stop_reason = None
    prev = None
    try:
        for sizes, analysis in zip(points, analyses):
            value = sizes[symbol]
            counts = analysis.evaluate(**sizes)
            now = time.monotonic()
            if deadline is not None:
                if now >= deadline:
                    stop_reason = f"--max-seconds {max_seconds:g} reached before {symbol}={value}"
                    break
                if prev is not None:
                    est = estimate_seconds(prev, counts["work"], repeats)
                    if now + est > deadline:
                        stop_reason = (f"--max-seconds {max_seconds:g}: {symbol}={value} would take about {est:.2g} s "
                                       f"more, past the limit")
                        break
            try:
                resized = subject.spec_at(sizes)  # a new build when a hyperparameter is a symbol
                run = model if model is not None else resized.model.eval().to(device)
                args = to_device(resized.example_inputs, device)
                kwargs = to_device(resized.example_kwargs or {}, device)

                def fn(run=run, args=args, kwargs=kwargs):
                    return run(*args, **kwargs)

                with torch.no_grad():
                    measured = time_call(fn, device, repeats, deadline)
            except torch.cuda.OutOfMemoryError:
                stop_reason = f"out of memory at {symbol}={value}"
                break
            except MemoryError:
                stop_reason = f"out of memory at {symbol}={value}"
                break
            except RuntimeError as exc:
                if "out of memory" in str(exc) or "can't allocate memory" in str(exc):
                    stop_reason = f"out of memory at {symbol}={value}"
                    break
                raise InputError(f"the model failed at {symbol}={value}: RuntimeError: {exc}") from exc
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - the user's model failed at this size
                raise InputError(f"the model failed at {symbol}={value}: {type(exc).__name__}: {exc}") from exc
            finally:
                args = kwargs = fn = run = None  # noqa: F841 - free the inputs
                if device == "cuda":
                    torch.cuda.empty_cache()
            if measured["cut"] and measured["repeats"] < min(MIN_REPEATS_KEPT, repeats):
                stop_reason = f"--max-seconds {max_seconds:g} reached while timing {symbol}={value} (dropped)"
                break
            predicted = point(analysis, profile, sizes)
            done.append({
                "size": value,
                "sizes": dict(sizes),
                "work": counts["work"],
                "depth": counts["depth"],
                "critical_path_ops": critical_path_launches(analysis, sizes),
                **{k: measured[k] for k in ("median_s", "iqr_s", "q1_s", "q3_s", "min_s", "max_s", "repeats", "number")},
                "predicted": {k: predicted[k] for k in ("brent_lower_s", "brent_upper_s", "burdened_upper_s")},
                **({"concrete_at": counts["concrete_at"]} if "concrete_at" in counts else {}),
            })
            prev = {"work": counts["work"], "single": measured["single_call_s"], "elapsed": time.monotonic() - now}
            if bar is not None:
                bar.set_postfix_str(f"{symbol}={value}: {seconds(measured['median_s'])}", refresh=False)
                bar.update(1)
            if measured["cut"]:
                stop_reason = f"--max-seconds {max_seconds:g} reached while timing {symbol}={value} (kept, " \
                              f"{measured['repeats']} of {repeats} repeats)"
                break
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.monotonic() - start
    return summarise(report, profile, device, device_name, symbol, held, values, done, stop_reason, elapsed, repeats)


# ---------------------------------------------------------------------------------------------
# Summary and verdict


def summarise(report, profile, device, device_name, symbol, held, requested, done, stop_reason, elapsed,
              repeats) -> dict:
    """Fit, slopes and verdict over the sizes timed."""
    import torch

    xs = [p["size"] for p in done]
    med = [p["median_s"] for p in done]
    fit = None
    if len(done) >= 3:
        fit = fit_time([p["work"] for p in done], [p["depth"] for p in done], med)
        for p, f in zip(done, fit.pop("predicted_s")):
            p["predicted"]["fit_s"] = f
        alpha, beta = fit["alpha_s_per_op"], fit["beta_s_per_level"]
        fit["achieved_flops"] = 1.0 / alpha if alpha > 0 else None
        fit["effective_parallelism"] = beta / alpha if alpha > 0 and beta > 0 else None
        fit["profile_lanes_equivalent"] = (1.0 / alpha) / profile.lane_flops if alpha > 0 else None
    sl = {
        "measured": slopes(xs, med),
        "predicted": slopes(xs, [p["predicted"]["burdened_upper_s"] for p in done]),
        "brent_upper": slopes(xs, [p["predicted"]["brent_upper_s"] for p in done]),
        "work": slopes(xs, [p["work"] for p in done]),
        "depth": slopes(xs, [p["depth"] for p in done]),
        "fit": slopes(xs, [p["predicted"].get("fit_s") for p in done]) if fit else None,
    }
    result = {
        "schema": SCHEMA,
        "model": report.model,
        "engine": report.engine,
        "exactness": report.exactness,
        "provenance": report.provenance.to_dict(),
        "unmodeled": [{"op": op, "count": count} for op, count in report.unmodeled],
        "device": device,
        "device_name": device_name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "profile": profile.to_dict(),
        "symbol": symbol,
        "held": dict(held),
        "work": str(report.work),
        "depth": str(report.depth),
        "requested_sizes": list(requested),
        "repeats": repeats,
        "sizes": xs,
        "median_s": med,
        "iqr_s": [p["iqr_s"] for p in done],
        "predicted": {k: [p["predicted"].get(k) for p in done]
                      for k in ("brent_lower_s", "brent_upper_s", "burdened_upper_s", "fit_s")},
        "points": done,
        "fit": fit,
        "slopes": sl,
        "stopped_early": stop_reason is not None,
        "stop_reason": stop_reason,
        "elapsed_s": elapsed,
        "plot": None,
    }
    result["verdict"] = verdict(result)
    return result


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
