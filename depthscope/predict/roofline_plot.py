"""`depthscope predict --plot FILE.png`: the device's two roofs, each op a point sized by its share of the time.

x: arithmetic intensity, work per byte moved (log); y: attained rate, work per second of the op's predicted time
(its roofline time plus its depth and launches, log). An op on a roof runs at that roof; an op below it loses
its time to depth or launches. The model's point is its total work over its total bytes and predicted time.
"""

from __future__ import annotations

import math

from depthscope.errors import InputError
from depthscope.predict.plot import require_matplotlib, save_figure
from depthscope.predict.units import seconds

LABELLED = 6  # ops named on the plot, by share of the time
SHORT = {"scaled_dot_product_attention": "sdpa", "_scaled_dot_product_flash_attention": "flash attention",
         "_scaled_dot_product_efficient_attention": "efficient attention"}
COLOURS = {"compute": "tab:blue", "memory": "tab:orange", "depth": "tab:purple", "launch": "tab:red"}


def short_op(op: str) -> str:
    """aten.scaled_dot_product_attention.default -> scaled_dot_product_attention."""
    parts = op.split(".")
    if parts[0] == "aten":
        parts = parts[1:]
    if len(parts) > 1 and parts[-1] in ("default", "Tensor", "Scalar", "int", "dim", "self", "input", "vec"):
        parts = parts[:-1]
    name = ".".join(parts)
    return SHORT.get(name, name)


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
    hi = max(xs + [model_x, ridge]) * 8

    fig, ax = plt.subplots(figsize=(11, 7), constrained_layout=True)
    ax.plot([lo, ridge], [bw * lo, peak], "-", color="black", lw=2.5,
            label=f"memory roof: {bw / 1e12:.3g} TB/s x intensity")
    ax.plot([ridge, hi], [peak, peak], "-", color="black", lw=2.5, label=f"compute roof: peak {peak / 1e12:.3g} TFLOP/s")
    ax.axvline(ridge, color="grey", ls=":", lw=1)
    ax.annotate(f"ridge point {ridge:.3g} ops/byte", (ridge, peak), textcoords="offset points", xytext=(6, 8),
                fontsize=9, color="grey")  # above the roofs nothing is drawn
    for label, colour in COLOURS.items():
        pts = [(x, y, o) for x, y, o in zip(xs, ys, ops) if o["bound"] == label]
        if pts:
            ax.scatter([x for x, _, _ in pts], [y for _, y, _ in pts], s=[area(o["share"]) for _, _, o in pts],
                       color=colour, alpha=0.6, edgecolors="black", linewidths=0.6, label=f"op, {label}-bound", zorder=3)
    for x, y in zip(xs, ys):  # how far below its roof an op runs: the time its depth and launches add
        ax.plot([x, x], [y, min(peak, bw * x)], ":", color="grey", lw=0.8, zorder=1)
    positive = [y for y in ys + [model_y] if y > 0]
    if not positive or model_x <= 0:
        raise InputError("--plot: nothing to draw: the model does no work or moves no bytes at these sizes")
    y_lo = min(positive + [bw * lo]) / 4
    y_hi = peak * 4
    frame = (math.log10(lo), math.log10(hi), math.log10(y_lo), math.log10(y_hi))
    placed = [marker_box(x, y, math.sqrt(area(o["share"])) / 2, frame) for x, y, o in zip(xs, ys, ops)]
    placed.append(marker_box(model_x, model_y, 12, frame))  # labels clear every marker and the star
    for x, y, o in sorted(zip(xs, ys, ops), key=lambda t: -t[2]["share"])[:LABELLED]:
        text = f"{short_op(o['op'])} ({100 * o['share']:.0f}%)"
        radius = math.sqrt(area(o["share"])) / 2  # points: the label starts beside the marker, not on it
        dx, dy, ha = label_offset(x, y, len(text), frame, placed, radius)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=9)
    ax.scatter([model_x], [model_y], marker="*", s=420, color="gold", edgecolors="black", linewidths=1, zorder=4,
               label=f"whole model: {r['bound']}-bound, T = {seconds(r['predicted_s'])}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("arithmetic intensity: work per byte moved (ops/byte; work = FLOPs for matmuls, one op per "
                  "element elsewhere)", fontsize=10)
    ax.set_ylabel("attained rate: work / predicted time (ops/s)", fontsize=10)
    sizes = ", ".join(f"{k}={v}" for k, v in p["sizes"].items())
    ax.set_title(f"{result['model']} on {prof['name']}: roofline at {sizes}\n"
                 "each op at work / (its roofline time + its depth and launches), area = its share of T",
                 fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=9, loc="upper left", markerscale=0.5)  # above the memory roof: no op is there
    if left_out:
        ax.text(0.99, 0.01, f"{left_out} op(s) with no work or no bytes not drawn", transform=ax.transAxes,
                fontsize=8, ha="right", va="bottom", color="grey")
    return save_figure(plt, fig, path)


WIDTH_PT, HEIGHT_PT, CHAR_PT, LINE_PT = 700.0, 480.0, 5.5, 12.0  # the axes in points, a label's letters


def area(share: float) -> float:
    """A marker's area in points squared: 40 plus 2400 times the op's share of the time."""
    return 40 + 2400 * share


def to_points(x, y, frame) -> tuple[float, float]:
    """(x, y) on the log-log axes in points from the axes' lower left corner."""
    x0, x1, y0, y1 = frame
    return ((math.log10(x) - x0) / (x1 - x0) * WIDTH_PT, (math.log10(y) - y0) / (y1 - y0) * HEIGHT_PT)


def marker_box(x, y, radius, frame) -> tuple[float, float, float, float]:
    px, py = to_points(x, y, frame)
    return (px - radius, py - radius, px + radius, py + radius)


def label_offset(x, y, chars, frame, placed, radius=4.0) -> tuple[float, float, str]:
    """An offset (points) for a label at (x, y) that clears the labels placed so far; records its box."""
    px, py = to_points(x, y, frame)
    width = chars * CHAR_PT
    r = radius + 3
    tries = [(r, 2, "left"), (r, -14, "left"), (-r, 2, "right"), (-r, -14, "right"), (r, 16, "left"),
             (r, -28, "left")]
    if px + r + width > WIDTH_PT:  # no room on the right: try the left first
        tries = tries[2:4] + tries[:2] + tries[4:]
    for dx, dy, ha in tries:
        left = px + dx if ha == "left" else px + dx - width
        box = (left, py + dy, left + width, py + dy + LINE_PT)
        own = marker_box(x, y, radius, frame)
        if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed if b != own):
            placed.append(box)
            return dx, dy, ha
    placed.append((px + r, py + 2, px + r + width, py + 2 + LINE_PT))
    return r, 2, "left"
