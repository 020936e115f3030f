"""Text for the roofline part of a `depthscope predict` result: the model per point, the ops, the regimes."""

from __future__ import annotations

from depthscope.predict.roofline import TOP_OPS
from depthscope.predict.units import number, rate_bytes, ratio, seconds, size_bytes


def profile_roof_line(profile: dict) -> str:
    """'bandwidth 3.35 TB/s, ridge 20 ops/byte, M = 228 KiB' or why the roofline is missing."""
    bw = profile.get("memory_bandwidth")
    if not bw:
        return "no memory_bandwidth in the profile: no roofline"
    text = f"bandwidth {rate_bytes(bw)}, ridge point {profile['peak_flops'] / bw:.3g} ops/byte"
    m = profile.get("fast_memory_bytes")
    return text + (f", fast memory M = {memory_words(m)}" if m else "")


def memory_words(m: int) -> str:
    """228 KiB for whole KiB below a MiB (how shared memory is quoted), else decimal units: 50 MB."""
    return f"{m // 1024} KiB" if m % 1024 == 0 and m < 1024**2 else size_bytes(m)


def _label(sizes: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items()) or "concrete"


def roofline_sections(result: dict, tablefmt: str) -> list[tuple[str, str]]:
    """The one-stream model per point, then the ops of the last point (of each when there are at most two)."""
    from tabulate import tabulate

    points = [p for p in result["points"] if p.get("roofline")]
    if not points:
        return [("roofline", f"profile {result['profile']['name']}: {profile_roof_line(result['profile'])}")]
    head = ["sizes", "work W", "bytes Q", "I/O at M", "W/Q", "W/peak", "Q/B", "roofline R", "D*t", "launches K",
            "K*o", "T = R + D*t + K*o", "Brent range (parallel)", "bound"]
    rows = []
    for p in points:
        r = p["roofline"]
        rows.append([_label(p["sizes"]), number(r["work"]), size_bytes(r["bytes"]), size_bytes(r["io_bytes"]),
                     ratio(r["intensity"]),
                     seconds(r["work_term_s"]), seconds(r["memory_term_s"]), seconds(r["roofline_s"]),
                     seconds(r["depth_s"]), f"{r['launches']:,}", seconds(r["launch_s"]), seconds(r["predicted_s"]),
                     f"{seconds(r['lower_s'])} .. {seconds(r['upper_s'])}", f"{r['bound']}-bound"])
    prof = result["profile"]
    out = [(f"roofline with depth and launches on {prof['name']} ({profile_roof_line(prof)}): "
            "ops one after another on one stream", tabulate(rows, head, tablefmt=tablefmt, disable_numparse=True))]
    notes = {p["roofline"]["approximate"] for p in points if p["roofline"]["approximate"]}
    out += [("APPROXIMATE roofline split", note) for note in sorted(notes)]
    for p in points if len(points) <= 2 else points[-1:]:
        out.append(op_section(p, tablefmt))
    return out


def op_section(p: dict, tablefmt: str) -> tuple[str, str]:
    """The heaviest ops at one point: work, bytes, intensity, the four parts of their time, share and bound."""
    from tabulate import tabulate

    r = p["roofline"]
    ops = r["ops"]
    rows = []
    for op in ops[:TOP_OPS]:
        rows.append([op["op"], op["count"], number(op["work"]), size_bytes(op["bytes"]), ratio(op["intensity"]),
                     seconds(op["compute_s"]), seconds(op["memory_s"]), seconds(op["depth_s"]),
                     seconds(op["launch_s"]), seconds(op["time_s"]), f"{100 * op['share']:.1f}%",
                     f"{op['bound']}-bound"])
    shown = f"the {min(TOP_OPS, len(ops))} heaviest of {len(ops)} ops" if len(ops) > TOP_OPS else f"{len(ops)} ops"
    title = f"ops at {_label(p['sizes'])} by predicted time ({shown}; compute and memory: the roofline of its nodes)"
    head = ["op", "nodes", "work", "bytes", "W/Q", "compute", "memory", "depth (path)", "launch", "time", "share",
            "bound"]
    return title, tabulate(rows, head, tablefmt=tablefmt, disable_numparse=True)


def roofline_regime_lines(result: dict) -> list[str]:
    """One sentence per symbol: where the one-stream model's bound changes."""
    return [r["sentence"] for r in result.get("roofline_regimes") or []]
