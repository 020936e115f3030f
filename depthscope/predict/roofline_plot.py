"""`depthscope predict --plot FILE.png`: the device's two roofs, each op a point sized by its share of the time.

x: arithmetic intensity, work per byte moved (log); y: attained rate, work per second of the op's predicted time
(its roofline time plus its depth and launches, log). An op on a roof runs at that roof; an op below it loses
its time to depth or launches. The model's point is its total work over its total bytes and predicted time.
"""

from __future__ import annotations

from depthscope.errors import InputError
from depthscope.predict.plot import require_matplotlib

LABELLED = 6  # ops named on the plot, by share of the time
COLOURS = {"compute": "tab:blue", "memory": "tab:orange", "depth": "tab:purple", "launch": "tab:red"}


def short_op(op: str) -> str:
    """aten.scaled_dot_product_attention.default -> scaled_dot_product_attention."""
    parts = op.split(".")
    if parts[0] == "aten":
        parts = parts[1:]
    if len(parts) > 1 and parts[-1] in ("default", "Tensor", "Scalar", "int", "dim", "self", "input", "vec"):
        parts = parts[:-1]
    return ".".join(parts)


def plot_roofline(result: dict, path: str) -> str:
    """Write the roofline of the result's last point to `path` (PNG by its extension)."""
    plt = require_matplotlib()
    p = result["points"][-1]
    r = p.get("roofline")
    prof = result["profile"]
    if not r:
        raise InputError(f"--plot: profile {prof['name']} has no memory_bandwidth, so there is no roofline to draw")
    peak, bw = prof["peak_flops"], prof["memory_bandwidth"]
    ops = [o for o in r["ops"] if o["work"] > 0 and o["bytes"] > 0]
    left_out = len(r["ops"]) - len(ops)
    xs = [o["work"] / o["bytes"] for o in ops]
    ys = [o["work"] / o["time_s"] for o in ops]
    ridge = peak / bw
    model_x = r["work"] / r["bytes"] if r["bytes"] else ridge
    model_y = r["work"] / r["predicted_s"] if r["predicted_s"] else peak
    lo = min(xs + [model_x, ridge]) / 4
    hi = max(xs + [model_x, ridge]) * 4

    fig, ax = plt.subplots(figsize=(11, 7), constrained_layout=True)
    ax.plot([lo, ridge], [bw * lo, peak], "-", color="black", lw=2.5,
            label=f"memory roof: {bw / 1e12:.3g} TB/s x intensity")
    ax.plot([ridge, hi], [peak, peak], "-", color="black", lw=2.5, label=f"compute roof: peak {peak / 1e12:.3g} TFLOP/s")
    ax.axvline(ridge, color="grey", ls=":", lw=1)
    ax.annotate(f"ridge {ridge:.3g} ops/byte", (ridge, peak), textcoords="offset points", xytext=(6, -16),
                fontsize=9, color="grey")
    for label, colour in COLOURS.items():
        pts = [(x, y, o) for x, y, o in zip(xs, ys, ops) if o["bound"] == label]
        if pts:
            ax.scatter([x for x, _, _ in pts], [y for _, y, _ in pts], s=[40 + 2400 * o["share"] for _, _, o in pts],
                       color=colour, alpha=0.6, edgecolors="black", linewidths=0.6, label=f"op, {label}-bound", zorder=3)
    for x, y, o in sorted(zip(xs, ys, ops), key=lambda t: -t[2]["share"])[:LABELLED]:
        ax.annotate(f"{short_op(o['op'])} ({100 * o['share']:.0f}%)", (x, y), textcoords="offset points",
                    xytext=(8, 6), fontsize=9)
    ax.scatter([model_x], [model_y], marker="*", s=420, color="gold", edgecolors="black", linewidths=1, zorder=4,
               label=f"whole model: {r['bound']}-bound, T = {r['predicted_s'] * 1e6:,.1f} us")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ys_all = ys + [model_y, bw * lo]
    ax.set_ylim(min(ys_all) / 4, peak * 4)
    ax.set_xlabel("arithmetic intensity: work per byte moved (ops/byte; work = FLOPs for matmuls, one op per "
                  "element elsewhere)", fontsize=10)
    ax.set_ylabel("attained rate: work / predicted time (ops/s)", fontsize=10)
    sizes = ", ".join(f"{k}={v}" for k, v in p["sizes"].items())
    ax.set_title(f"{result['model']} on {prof['name']}: roofline at {sizes}\n"
                 "each op at work / (its roofline time + its depth and launches), area = its share of T",
                 fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=9, loc="lower right", markerscale=0.5)
    if left_out:
        ax.text(0.01, 0.99, f"{left_out} op(s) with no work or no bytes not drawn", transform=ax.transAxes,
                fontsize=8, va="top", color="grey")
    try:
        fig.savefig(path, dpi=120)
    except (OSError, ValueError) as exc:
        raise InputError(f"--plot {path}: cannot write the figure: {exc}") from exc
    finally:
        plt.close(fig)
    return path
