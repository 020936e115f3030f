"""The roofline with depth and launches: each op at max(work/peak, bytes/bandwidth) on one stream, and its regime.

Per op i with work w_i and unfused bytes q_i (read plus written) on a device of peak rate P_f and bandwidth B,
its roofline time is max(w_i/P_f, q_i/B) (Williams, Waterman and Patterson, CACM 2009): compute-bound when
w_i/P_f >= q_i/B, memory-bound otherwise. Work meets the peak, as Brent's terms of `predict` do: work is FLOPs
for the matmul family and one op per element elsewhere. On one stream the ops run one after another:

- R = sum_i max(w_i/P_f, q_i/B), split into its compute-bound and its memory-bound ops;
- plus the depth term D*t and K launches of o each (K = every op that moves or computes, once per loop trip):
  T = R + D*t + K*o, the burdened one-stream prediction;
- Brent's range for the parallel view: max(W/P_f, Q/B, D*t) <= T_P <= R + D*t.

The regime is the largest of T's four parts: "compute", "memory", "depth" or "launch"; per op the same four parts
(its share of the critical path's depth, its own launches).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from depthscope.cost.traffic import FAST_MEMORY
from depthscope.predict.launches import node_trips
from depthscope.predict.numeric import Compiled
from depthscope.predict.regimes import SEARCH_CAP, changes_clause, regime_changes

LABELS = ("compute", "memory", "depth", "launch")
TOP_OPS = 12  # ops listed per point in text (JSON has all)


class NodeTable:
    """Every launched node's work, bytes and trips, and the totals, compiled once for one report and profile.

    The roofline's parts need the profile's memory_bandwidth; the launches do not.
    """

    def __init__(self, report, profile):
        self.report, self.profile = report, profile
        self.nodes = [node for node in report.nodes if node.status != "free"]
        built = report.breakdown_at or {}
        self.built = built
        names = set(report.symbols) | set(built)
        exprs = ([n.cost.work for n in self.nodes] + [n.cost.bytes for n in self.nodes]
                 + [node_trips(n) for n in self.nodes])
        self._nodes = Compiled(exprs, names)
        self._totals = Compiled([report.work, report.bytes, report.depth], report.symbols)
        m = profile.fast_memory_bytes  # io's M: the profile's fast memory (docs/predict-and-validate.md)
        self._io = Compiled([report.io.subs(FAST_MEMORY, m)], report.symbols) if m else None

    def io(self, sizes: dict[str, int]) -> float | None:
        """The analysis's I/O bound at the profile's fast memory M (bytes), None without an M."""
        return self._io.values(sizes)[0] if self._io else None

    def arrays(self, sizes: dict[str, int]):
        """(work, bytes, trips) per node and (W, Q, D) in total at `sizes`; a fitted build's split is scaled."""
        k = len(self.nodes)
        v = np.array(self._nodes.values({**sizes, **self.built}), dtype=float)
        w, q, trips = v[:k], v[k:2 * k], v[2 * k:]
        total_w, total_q, depth = self._totals.values(sizes)
        if not self.at_build(sizes):  # nodes are one analysed build's: scale its split to the fitted totals
            w = w * (total_w / w.sum()) if w.sum() else w
            q = q * (total_q / q.sum()) if q.sum() else q
        return w, q, trips, (total_w, total_q, depth)


    def at_build(self, sizes: dict[str, int]) -> bool:
        """True when the nodes' own sizes are these (always for the symbolic engine)."""
        return all(sizes.get(name) == value for name, value in self.built.items())

    def launches(self, sizes: dict[str, int]) -> int:
        """K: kernels one call launches on one stream (every node that moves or computes, once per loop trip)."""
        w, q, trips, _ = self.arrays(sizes)
        return int(round(float(np.where((w > 0) | (q > 0), trips, 0.0).sum())))


def node_parts(w, q, trips, profile):
    """Per node: compute time if compute-bound (else 0), memory time if memory-bound (else 0), launches."""
    c = w / profile.peak_flops
    m = q / profile.memory_bandwidth
    compute = np.where(c >= m, c, 0.0)
    memory = np.where(c >= m, 0.0, m)
    launches = np.where((w > 0) | (q > 0), trips, 0.0)
    return compute, memory, launches


def model_parts(table: NodeTable, sizes: dict[str, int]) -> dict[str, float]:
    """The four parts of the one-stream time T = R + D*t + K*o at `sizes` (seconds), and K."""
    w, q, trips, (_, _, depth) = table.arrays(sizes)
    return summed(*node_parts(w, q, trips, table.profile), depth, table.profile)


def summed(compute, memory, launches, depth, prof) -> dict[str, float]:
    """R's compute-bound and memory-bound parts, D*t, K*o and K from the per-node parts."""
    k = float(launches.sum())
    return {"compute": float(compute.sum()), "memory": float(memory.sum()), "depth": depth * prof.level_time_s,
            "launch": k * prof.launch_overhead_s, "launches": k}


def bound_of(parts: dict[str, float]) -> str:
    """The largest of the four parts (the first in LABELS on a tie)."""
    return max(LABELS, key=lambda label: parts[label])


def roofline_point(table: NodeTable, sizes: dict[str, int]) -> dict:
    """The model's terms, Brent's range with both roofs, the bound, and every op's terms at `sizes`."""
    prof = table.profile
    w, q, trips, (total_w, total_q, depth) = table.arrays(sizes)
    compute, memory, launches = node_parts(w, q, trips, prof)
    parts = summed(compute, memory, launches, depth, prof)
    roof = parts["compute"] + parts["memory"]
    upper = roof + parts["depth"]
    total = upper + parts["launch"]
    out = {
        "work": total_w,
        "bytes": total_q,
        "intensity": total_w / total_q if total_q else None,
        "work_term_s": total_w / prof.peak_flops,
        "memory_term_s": total_q / prof.memory_bandwidth,
        "io_bytes": table.io(sizes),
        "fast_memory_bytes": prof.fast_memory_bytes,
        "compute_s": parts["compute"],
        "memory_s": parts["memory"],
        "roofline_s": roof,
        "depth_s": parts["depth"],
        "launches": int(round(parts["launches"])),
        "launch_s": parts["launch"],
        "lower_s": max(total_w / prof.peak_flops, total_q / prof.memory_bandwidth, parts["depth"]),
        "upper_s": upper,
        "predicted_s": total,
        "bound": bound_of(parts),
        "shares": {label: (parts[label] / total if total else 0.0) for label in LABELS},
        "approximate": (f"fitted engine: the per-op split is that of the analysed build at "
                        f"{', '.join(f'{k}={v}' for k, v in table.built.items())}, scaled to the totals"
                        if not table.at_build(sizes) else None),
    }
    out["ops"] = op_rows(table, sizes, w, q, compute, memory, launches, total)
    return out


def op_rows(table, sizes, w, q, compute, memory, launches, total) -> list[dict]:
    """Per ATen op: its nodes' work, bytes and roofline parts, its part of the critical path, its launches."""
    report, prof = table.report, table.profile
    path_depth: dict = defaultdict(float)
    for step in report.critical_path(sizes).steps:
        path_depth[step.op] += report.value(step.depth, sizes)
    rows: dict = {}
    for i, node in enumerate(table.nodes):
        row = rows.setdefault(node.op, {"op": node.op, "count": 0, "work": 0.0, "bytes": 0.0, "compute_s": 0.0,
                                        "memory_s": 0.0, "launches": 0.0})
        row["count"] += 1
        row["work"] += w[i]
        row["bytes"] += q[i]
        row["compute_s"] += compute[i]
        row["memory_s"] += memory[i]
        row["launches"] += launches[i]
    out = []
    for row in rows.values():
        row["depth_s"] = path_depth.get(row["op"], 0.0) * prof.level_time_s
        row["launch_s"] = row["launches"] * prof.launch_overhead_s
        row["launches"] = int(round(row["launches"]))
        row["time_s"] = row["compute_s"] + row["memory_s"] + row["depth_s"] + row["launch_s"]
        if row["time_s"] == 0:
            continue  # allocations: nothing moved or computed, nothing launched
        row["intensity"] = row["work"] / row["bytes"] if row["bytes"] else None
        row["share"] = row["time_s"] / total if total else 0.0
        row["bound"] = bound_of({label: row[f"{label}_s"] for label in LABELS})
        out.append(row)
    out.sort(key=lambda r: (-r["time_s"], r["op"]))
    return out


def roofline_regime(table: NodeTable, symbol: str, held: dict[str, int]) -> dict:
    """Where the model's bound changes over `symbol`, the others held: the first label and each change."""
    info = table.report.symbols[symbol]
    lo = info.min
    hi = info.max if info.max is not None else SEARCH_CAP

    def label(x: int) -> str:
        return bound_of(model_parts(table, {**held, symbol: x}))

    first, changes = regime_changes(label, lo, hi)
    hold = f" (holding {', '.join(f'{k}={v}' for k, v in held.items())})" if held else ""
    clause = changes_clause(symbol, first, changes, lo, hi, info.max is None)
    return {"symbol": symbol, "held": dict(held), "range": [lo, hi], "first": first,
            "changes": [{"at": at, "bound": name} for at, name in changes],
            "sentence": f"Over {symbol}{hold}: {clause}."}
