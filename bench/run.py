"""The benchmark: one command, one Markdown table (bench/RESULTS.md and stdout).

    python bench/run.py [--quick] [--out bench/RESULTS.md]

Every measurement runs in a fresh process, so import costs, caches and peak RSS belong to it alone:
1. capture (torch.export) and analysis time, peak RSS and node count for GPT-2 small, BERT-base and a
   Llama-3-70B-shaped config, all built from configs on the meta device;
2. analysis time against layer count (GPT-2 width, 2 to 48 layers) and its fitted exponent;
3. whole processes side by side: `depthscope analyze` on GPT-2 small (every b and n at once) against
   torch.utils.flop_counter counting one concrete CPU forward of GPT-2 small at b=2, n=1024.
Needs transformers (the `hf` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _config(name: str, layers: int | None = None):
    import transformers as tf

    if name == "gpt2":
        cfg = tf.GPT2Config(use_cache=False)
        if layers:
            cfg.n_layer = layers
        return tf.GPT2LMHeadModel, cfg, {"input_ids": 1024}
    if name == "bert":
        return tf.BertModel, tf.BertConfig(), {"input_ids": 512}
    if name == "llama-70b":
        cfg = tf.LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                             num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, use_cache=False)
        return tf.LlamaForCausalLM, cfg, {"input_ids": 8192}
    raise ValueError(name)


def measure_one(name: str, layers: int | None) -> dict:
    """Child process: build on meta, capture, analyze; report times, RSS and nodes."""
    import resource

    import torch
    from torch.export import Dim

    from depthscope.capture.captured import capture
    from depthscope.engine.analysis import Provenance, build_analysis
    from depthscope.engine.walk import walk_captured
    from depthscope.model_file import ModelSpec
    from depthscope.report import render

    cls, cfg, limits = _config(name, layers)
    cfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = cls(cfg).eval()
    ids = torch.randint(0, 100, (2, 16), device="meta")
    dyn = {"input_ids": {0: Dim("b"), 1: Dim("n", max=limits["input_ids"])}}
    t0 = time.perf_counter()
    captured = capture(ModelSpec(model, (ids,), {}, dyn, name=name))
    t1 = time.perf_counter()
    report = build_analysis(walk_captured(captured), Provenance())
    t2 = time.perf_counter()
    render(report, "json")  # the views (critical path, ops, modules at the display sizes) and big-O
    t3 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": name, "layers": layers, "capture_s": t1 - t0, "analysis_s": t2 - t1, "render_s": t3 - t2,
            "rss_mib": rss, "nodes": report.node_count, "work": str(report.big_o["work"]), "depth": str(report.depth)}


def export_only(path: str) -> dict:
    """Child process: import a model file and torch.export it, nothing else (the baseline for the overhead)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("bench_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_model"] = module
    spec.loader.exec_module(module)
    model = module.model() if not isinstance(module.model, torch.nn.Module) else module.model
    inputs = module.example_inputs() if callable(module.example_inputs) else module.example_inputs
    torch.export.export(model.eval(), inputs, dynamic_shapes=module.dynamic_shapes)
    return {}


def flop_counter_forward() -> dict:
    """Child process: one concrete CPU forward of GPT-2 small at b=2, n=1024 under FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cls, cfg, _ = _config("gpt2")
    torch.manual_seed(0)
    model = cls(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 1024))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(ids)
    return {"flops": counter.get_total_flops()}


def _child(args: list[str], timeout: float = 900) -> tuple[dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def _whole_process(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, **(env or {})))
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def overhead_section(repeats: int) -> list[str]:
    """Whole processes, alternating: `depthscope analyze` on the Llama-3-70B-shaped file against torch.export alone."""
    env = {"DEPTHSCOPE_HF_MODEL": "llama-70b"}
    file = os.path.join(ROOT, "examples", "hf_models.py")
    export_s, analyze_s = [], []
    for _ in range(repeats):
        export_s.append(_whole_process([sys.executable, __file__, "--export-only", file], env=env))
        analyze_s.append(_whole_process([sys.executable, "-m", "depthscope", "analyze", file, "--format", "json"],
                                        env=env))
    e, a = sorted(export_s)[repeats // 2], sorted(analyze_s)[repeats // 2]
    return ["## End-to-end overhead above torch.export (Llama-3-70B shapes, whole processes)\n",
            f"Median of {repeats} alternating runs: each process imports the model file and exports it; "
            "`depthscope analyze --format json` also walks, builds the Analysis and renders it.\n",
            "| process | runs s | median s |", "|---|---|---:|",
            f"| import + `torch.export.export` | {', '.join(f'{x:.1f}' for x in export_s)} | {e:.1f} |",
            f"| `depthscope analyze examples/hf_models.py --format json` | {', '.join(f'{x:.1f}' for x in analyze_s)} | "
            f"{a:.1f} |",
            f"\nOverhead: **{100 * (a - e) / e:+.1f}%** ({a - e:+.1f} s). In process, depthscope's own work is the "
            "analysis and render columns of the first table; the `depthscope` process also skips the interpreter's "
            "teardown (it flushes and calls `os._exit`), which costs the export-only process about 1 s here.\n"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the 70B model and use fewer layer counts")
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--flop-counter", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--export-only", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.one:
        print(json.dumps(measure_one(opts.one, opts.layers)))
        return
    if opts.flop_counter:
        print(json.dumps(flop_counter_forward()))
        return
    if opts.export_only:
        print(json.dumps(export_only(opts.export_only)))
        return

    import torch

    lines = [f"# depthscope benchmark\n",
             f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, Python {platform.python_version()}, "
             f"{os.cpu_count()} CPUs ({platform.machine()}). Each row is a fresh process; models are built from "
             "configs on the meta device.\n",
             "## Real architectures\n",
             "| model | nodes | capture s | analysis s | render s | peak RSS MiB | work | depth |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    models = ["gpt2", "bert"] + ([] if opts.quick else ["llama-70b"])
    for name in models:
        row, _ = _child(["--one", name])
        lines.append(f"| {name} | {row['nodes']} | {row['capture_s']:.1f} | {row['analysis_s']:.2f} | "
                     f"{row['render_s']:.2f} | {row['rss_mib']:.0f} | O({row['work']}) | `{row['depth']}` |")

    lines += ["\n## Analysis time against layer count (GPT-2 width 768)\n",
              "| layers | nodes | capture s | analysis s |", "|---:|---:|---:|---:|"]
    counts = [2, 8, 24] if opts.quick else [2, 4, 8, 16, 32, 48]
    points = []
    for layers in counts:
        row, _ = _child(["--one", "gpt2", "--layers", str(layers)])
        points.append((layers, row["analysis_s"]))
        lines.append(f"| {layers} | {row['nodes']} | {row['capture_s']:.1f} | {row['analysis_s']:.3f} |")
    xs, ys = [math.log(p[0]) for p in points], [math.log(p[1]) for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    lines.append(f"\nFitted exponent of analysis time in layers (least squares on log-log): **{slope:.2f}**.\n")

    if not opts.quick:
        lines += overhead_section(repeats=3)

    analyze_s = _whole_process([sys.executable, "-m", "depthscope", "analyze", "examples/hf_models.py",
                                "--format", "json"], env={"DEPTHSCOPE_HF_MODEL": "gpt2"})
    flops, counter_s = _child(["--flop-counter"])
    lines += ["## depthscope against one concrete forward under flop_counter (whole processes)\n",
              "| command | what it answers | wall s |", "|---|---|---:|",
              f"| `depthscope analyze examples/hf_models.py` (GPT-2 small, meta) | work, depth, FLOPs for every b and n | "
              f"{analyze_s:.1f} |",
              f"| flop_counter, one CPU forward of GPT-2 small at b=2, n=1024 | FLOPs at that one size "
              f"({flops['flops']:.3e}) | {counter_s:.1f} |",
              f"\nRatio depthscope / flop_counter: **{analyze_s / counter_s:.2f}**.\n"]
    text = "\n".join(lines)
    with open(opts.out, "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
