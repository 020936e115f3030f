"""Benchmark: capture and analysis time of GPT-2-shaped models against layer count (Markdown table on stdout).

    python bench/analyze_scaling.py [--layers 1,2,4,8,12,24] [--width 768]

Models are Hugging Face GPT-2 configs built on the meta device (no weights, no downloads). The fitted exponent
of analysis time against layers checks that the engine's cost is linear in graph size.
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch
from torch.export import Dim


def build(layers: int, width: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=layers, n_embd=width, n_head=max(1, width // 64), vocab_size=50257, n_positions=1024,
                     use_cache=False)
    with torch.device("meta"):
        model = GPT2LMHeadModel(cfg).eval()
    return model, (torch.randint(0, 100, (2, 16), device="meta"),), {"input_ids": {0: Dim("b"), 1: Dim("n", max=1024)}}


def main() -> None:
    from depthscope.analysis import analyze_captured
    from depthscope.capture import ModelSpec, capture

    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", default="1,2,4,8,12,24")
    parser.add_argument("--width", type=int, default=768)
    opts = parser.parse_args()
    rows = []
    for layers in [int(x) for x in opts.layers.split(",")]:
        model, inputs, dyn = build(layers, opts.width)
        t0 = time.perf_counter()
        captured = capture(ModelSpec(model, inputs, {}, dyn, name=f"gpt2-{layers}"))
        t1 = time.perf_counter()
        report = analyze_captured(captured)
        t2 = time.perf_counter()
        rows.append((layers, report.node_count, t1 - t0, t2 - t1, str(report.depth)))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"torch {torch.__version__}, width {opts.width}, peak RSS {rss:.0f} MiB\n")
    print("| layers | nodes | capture s | analysis s | depth |")
    print("|---:|---:|---:|---:|---|")
    for layers, nodes, cap, ana, depth in rows:
        print(f"| {layers} | {nodes} | {cap:.2f} | {ana:.2f} | `{depth}` |")
    if len(rows) >= 2:
        xs = [math.log(r[0]) for r in rows]
        ys = [math.log(r[3]) for r in rows]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        print(f"\nanalysis time ~ layers^{slope:.2f} (least squares on log-log)")


if __name__ == "__main__":
    main()
