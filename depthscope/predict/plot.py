"""Plots for `depthscope validate --plot FILE.png` (matplotlib, the optional extra `plot`).

Left: measured time per call (median, IQR bars) against the swept size on log-log axes, with the fits
alpha*W + beta*D + gamma and alpha*W + beta*Q + gamma*D + delta*K, the device profile's Brent range, burdened
bound and one-stream roofline. Right: work and depth against
the size (work on a log axis, depth on its own linear axis).
"""

from __future__ import annotations

from depthscope.errors import InputError


def require_matplotlib():
    """The pyplot module on a file-only backend; InputError (exit 2) with the install line when it is missing."""
    try:
        import matplotlib
    except ImportError as exc:
        raise InputError("--plot needs matplotlib: pip install 'depthscope[plot]' (or pip install matplotlib)") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_validation(result: dict, path: str) -> str:
    """Write the validation figure to `path` (PNG by its extension, or any format matplotlib knows)."""
    plt = require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    pts = result["points"]
    sym = result["symbol"]
    prof = result["profile"]["name"]
    xs = [p["size"] for p in pts]
    held = ", ".join(f"{k}={v}" for k, v in result["held"].items())

    fig, (ax, ax_w) = plt.subplots(1, 2, figsize=(13, 5.2), constrained_layout=True)
    where = result["device_name"]
    if result["device"] == "cpu":
        where += f", {result['threads']} thread(s)"
    fig.suptitle(f"depthscope validate: {result['model']} on {where}" + (f"; {held}" if held else ""), fontsize=13)

    if pts:
        med = [p["median_s"] for p in pts]
        lo = [p["median_s"] - p["q1_s"] for p in pts]
        hi = [p["q3_s"] - p["median_s"] for p in pts]
        ax.errorbar(xs, med, yerr=[lo, hi], fmt="o-", color="black", lw=1.8, ms=6, capsize=4,
                    label="measured (median, IQR)", zorder=5)
        if all("fit_s" in p["predicted"] for p in pts):
            fit = result["fit"]
            label = "fit  \u03b1W + \u03b2D + \u03b3"
            if fit.get("r2") is not None:
                label += f"  (R\u00b2 = {fit['r2']:.3f})"
            ax.plot(xs, [p["predicted"]["fit_s"] for p in pts], "--", color="tab:blue", lw=2, label=label)
        b_lo = [p["predicted"]["brent_lower_s"] for p in pts]
        b_hi = [p["predicted"]["brent_upper_s"] for p in pts]
        ax.fill_between(xs, b_lo, b_hi, color="tab:orange", alpha=0.3, label=f"Brent range, {prof} profile")
        ax.plot(xs, b_hi, "-", color="tab:orange", lw=1)
        ax.plot(xs, [p["predicted"]["burdened_upper_s"] for p in pts], ":", color="tab:red", lw=2,
                label=f"burdened bound W/peak + D\u00b7t + K\u00b7o ({prof})")
        if all(p["predicted"].get("roofline_s") for p in pts):
            ax.plot(xs, [p["predicted"]["roofline_s"] for p in pts], "-.", color="tab:purple", lw=2,
                    label=f"roofline, one stream: R + D\u00b7t + K\u00b7o ({prof})")
        if all("fit_bytes_s" in p["predicted"] for p in pts) and result.get("fit_bytes"):
            r2 = result["fit_bytes"]["r2"]
            ax.plot(xs, [p["predicted"]["fit_bytes_s"] for p in pts], "--", color="tab:green", lw=1.5,
                    label="fit  \u03b1W + \u03b2Q + \u03b3D + \u03b4K" + (f"  (R\u00b2 = {r2:.3f})" if r2 is not None else ""))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    ax.set_xlabel(f"{sym} (size of the swept dimension)", fontsize=11)
    ax.set_ylabel("time per forward call (seconds)", fontsize=11)
    ax.set_title("measured against predicted time (log-log)", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9, loc="upper left")

    if pts:
        ax_w.plot(xs, [p["work"] for p in pts], "s-", color="tab:green", lw=2, label="work W (ops, left axis)")
        ax_w.set_xscale("log", base=2)
        ax_w.set_yscale("log")
        ax_d = ax_w.twinx()
        ax_d.plot(xs, [p["depth"] for p in pts], "^-", color="tab:purple", lw=2, label="depth D (levels, right axis)")
        ax_d.set_ylabel("depth D (dependent levels)", color="tab:purple", fontsize=11)
        ax_d.tick_params(axis="y", colors="tab:purple")
        ax_d.yaxis.set_major_locator(MaxNLocator(integer=True))
        dmin, dmax = min(p["depth"] for p in pts), max(p["depth"] for p in pts)
        pad = max(1.0, 0.1 * (dmax - dmin))
        ax_d.set_ylim(max(0.0, dmin - pad), dmax + pad)
        lines = ax_w.get_lines() + ax_d.get_lines()
        ax_w.legend(lines, [ln.get_label() for ln in lines], fontsize=9, loc="upper left")
    ax_w.set_xlabel(f"{sym} (size of the swept dimension)", fontsize=11)
    ax_w.set_ylabel("work W (FLOP-like ops, log scale)", color="tab:green", fontsize=11)
    ax_w.tick_params(axis="y", colors="tab:green")
    ax_w.set_title("work and depth against size", fontsize=11)
    ax_w.grid(True, which="both", alpha=0.3)

    if pts:
        for a in (ax, ax_w):
            a.set_xticks(xs)
            a.set_xticklabels([f"{x:,}" for x in xs])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax_w.xaxis.set_minor_locator(plt.NullLocator())
    return save_figure(plt, fig, path)


def save_figure(plt, fig, path: str) -> str:
    """Write `fig` to `path` and close it; InputError (exit 2) when the file cannot be written."""
    try:
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as exc:
        raise InputError(f"--plot {path}: cannot write the figure: {exc}") from exc
    finally:
        plt.close(fig)
    return path
