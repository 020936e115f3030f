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
from depthscope.predict.fit import fit_terms, fit_time, slopes
from depthscope.predict.model import critical_path_launches, point
from depthscope.predict.roofline import NodeTable, model_parts
from depthscope.predict.units import seconds
from depthscope.predict.verdict import verdict
from depthscope.predict.sizes import complete_sizes
from depthscope.predict.timing import (
    check_device,
    default_profile,
    estimate_seconds,
    progress_bar,
    time_call,
    to_device,
)

SCHEMA = "depthscope.validate/2"  # 2: bytes and launches per size, the fit with bytes and the W-only fit
MIN_REPEATS_KEPT = 3  # a size cut short by --max-seconds is kept if it has this many blocks


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

    tables = {id(a): NodeTable(a, profile) for a in analyses}  # launches per call; the roofline time with a bandwidth
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
            table = tables[id(analysis)]
            done.append({
                "size": value,
                "sizes": dict(sizes),
                "work": counts["work"],
                "bytes": counts["bytes"],
                "depth": counts["depth"],
                "launches": table.launches(sizes),
                "critical_path_ops": critical_path_launches(analysis, sizes),
                **{k: measured[k] for k in ("median_s", "iqr_s", "q1_s", "q3_s", "min_s", "max_s", "repeats", "number")},
                "predicted": {**{k: predicted[k] for k in ("brent_lower_s", "brent_upper_s", "burdened_upper_s")},
                              "roofline_s": one_stream_time(table, sizes)},
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
    fits = bytes_fits(done, med) if len(done) >= 3 else {"fit_bytes": None, "fit_work": None}
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
                      for k in ("brent_lower_s", "brent_upper_s", "burdened_upper_s", "roofline_s", "fit_s",
                                "fit_bytes_s")},
        "points": done,
        "fit": fit,
        **fits,
        "slopes": sl,
        "stopped_early": stop_reason is not None,
        "stop_reason": stop_reason,
        "elapsed_s": elapsed,
        "plot": None,
    }
    result["verdict"] = verdict(result)
    return result


def one_stream_time(table, sizes) -> float | None:
    """The roofline's one-stream prediction R + D*t + K*o at `sizes`, None without a memory bandwidth."""
    if not table.profile.memory_bandwidth:
        return None
    parts = model_parts(table, sizes)
    return parts["compute"] + parts["memory"] + parts["depth"] + parts["launch"]


def bytes_fits(done: list[dict], med: list[float]) -> dict:
    """alpha*W + beta*Q + gamma*D + delta*K (Q bytes, K launches) and the W-only fit, by NNLS on relative errors."""
    full = fit_terms({key: [p[name] for p in done] for key, name in
                      (("W", "work"), ("Q", "bytes"), ("D", "depth"), ("K", "launches"))}, med)
    for p, f in zip(done, full.pop("predicted_s")):
        p["predicted"]["fit_bytes_s"] = f
    work = fit_terms({"W": [p["work"] for p in done]}, med)
    work.pop("predicted_s")
    return {"fit_bytes": full, "fit_work": work}
