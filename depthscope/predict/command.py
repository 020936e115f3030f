"""The click commands `depthscope predict` and `depthscope validate` (registered by depthscope.cli)."""

from __future__ import annotations

import dataclasses
import os

import click

from depthscope.engine import ENGINES
from depthscope.errors import InputError
from depthscope.options import bounded_sizes, parse_bytes, timeout_option
from depthscope.predict.profiles import load_profile
from depthscope.predict.sizes import complete_sizes, expand_points, parse_sizes


def bytes_size(ctx, param, value):
    """--fast-memory's value in bytes (None when not given); a bad size is click's usage error."""
    try:
        return None if value is None else parse_bytes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.command("predict")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--at", "at", multiple=True, metavar="NAME=INT[,INT...]", callback=bounded_sizes,
              help="Sizes to predict at (repeat per symbol; a list gives one row per combination). "
                   "Symbols not given take their size in the example inputs.")
@click.option("--device-profile", "device_profile", default="h100", show_default=True,
              metavar="h100|h200|a100|a100-40gb|cpu|FILE.toml",
              help="Built-in profile or a TOML file (peak_flops, processors, level_time_s, launch_overhead_s, "
                   "memory_bandwidth, fast_memory_bytes).")
@click.option("--over", "over", multiple=True, metavar="NAME",
              help="Solve the regime crossover over these symbols only (default: every symbol).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None,
              help="Draw the roofline at the last point to this PNG: the device's two roofs, each op a point "
                   "sized by its share of the time (needs matplotlib: pip install 'depthscope[plot]').")
@click.option("--train", is_flag=True, help="Predict a training step: forward plus backward of the loss.")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True)
@click.option("--symbolic", "symbolic", multiple=True, metavar="NAME",
              help="Make this integer keyword parameter of the model factory a symbol (repeatable).")
@click.option("--generate", is_flag=True, help="Predict generation: time to first token, time per output token at c "
              "(default n) and total time for T new tokens (--at T=...), and the decode step's regime over b.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("--fast-memory", "fast_memory", default=None, metavar="BYTES", callback=bytes_size,
              help="The fast memory M of the I/O bound (49152, 48KiB, 50MB), in place of the profile's "
                   "fast_memory_bytes (shared memory per SM on the built-in GPUs).")
@timeout_option
def predict_command(path, at, device_profile, over, fmt, plot, train, engine, symbolic, generate, debug, fast_memory):
    """Predict time for the model file PATH on a device: roofline with depth and launches, Brent's range, regime."""
    from depthscope.pipeline import analyze_subject, load_subject
    from depthscope.predict.model import predict  # sympy and torch: only when the command runs
    from depthscope.predict.render import render_prediction

    profile = load_profile(device_profile)
    if fast_memory is not None:  # the I/O bound's M, in place of the profile's
        profile = dataclasses.replace(profile, fast_memory_bytes=fast_memory,
                                      sources={**profile.sources, "fast_memory_bytes": "--fast-memory"})
    if plot:
        check_plot_path(plot)
        if not profile.memory_bandwidth:
            raise InputError(f"--plot: profile {profile.name} has no memory_bandwidth, so there is no roofline to draw")
    lists = parse_sizes(at)
    subject = load_subject(path, symbolic or None)
    if generate:
        return _predict_generation(subject, lists, profile, fmt, plot, train, over, engine)
    report = analyze_subject(subject, train=train, engine=engine, on_fallback=_echo)
    resolve = concrete_resolver(subject, report, engine, _echo)
    defaults = subject.example_sizes()
    points = []
    for combo in expand_points(lists) or [{}]:
        sizes, filled = complete_sizes(report, combo, defaults)
        resolve(sizes).symbol_values(sizes)  # names, ranges, completeness; below a min: a concrete capture
        points.append(sizes)
    if filled:
        click.echo("depthscope: sizes from the example inputs: "
                   + ", ".join(f"{k}={points[-1][k]}" for k in filled), err=True)
    result = predict(report, profile, points, list(over) or None, at=resolve)
    if plot:
        from depthscope.predict.roofline_plot import plot_roofline

        result["plot"] = plot_roofline(result, plot)
    click.echo(render_prediction(result, fmt), nl=False)


def _predict_generation(subject, lists, profile, fmt, plot, train, over, engine) -> None:
    """predict --generate: one point (one size per symbol), TTFT, per-token and total time, the regime over b."""
    from depthscope.generate.analysis import generation_analysis
    from depthscope.generate.specs import NEW_TOKENS
    from depthscope.predict.generate import complete, predict_generation
    from depthscope.predict.generate_text import render

    for flag, given in (("--plot", plot), ("--train", train), ("--over", over)):
        if given:
            raise InputError(f"{flag} does not combine with --generate")
    many = [name for name, values in lists.items() if len(values) != 1]
    if many:
        raise InputError(f"--at {many[0]}=...: --generate predicts at one point; give one size per symbol")
    if NEW_TOKENS not in lists:  # before the captures: nothing to predict without T
        raise InputError(f"predict --generate: give the number of new tokens, e.g. --at {NEW_TOKENS}=256")
    gen = generation_analysis(subject, engine=engine, on_fallback=_echo)
    sizes, filled = complete(gen, {name: values[0] for name, values in lists.items()}, subject.example_sizes())
    if filled:
        _echo("sizes from the example inputs: " + ", ".join(f"{k}={sizes[k]}" for k in filled))
    result = predict_generation(gen, profile, sizes)
    for text in result["generate"]["notes"]:
        _echo(f"note: {text}")
    click.echo(render(result, fmt), nl=False)


def check_plot_path(plot: str) -> None:
    """Before any analysis: matplotlib is importable and the PNG's folder exists (else exit 2)."""
    from depthscope.predict.plot import require_matplotlib

    require_matplotlib()
    folder = os.path.dirname(os.path.abspath(plot))
    if not os.path.isdir(folder):
        raise InputError(f"--plot {plot}: folder {folder} does not exist")


def _echo(text: str) -> None:
    click.echo(f"depthscope: {text}", err=True)


def concrete_resolver(subject, report, engine: str, echo):
    """sizes -> the Analysis that evaluates them (pipeline.analysis_at), echoing each concrete capture's note once."""
    from depthscope.pipeline import analysis_at

    said: set = set()

    def resolve(sizes: dict):
        analysis, text = analysis_at(subject, report, sizes, engine=engine, on_fallback=echo)
        if text and text not in said:
            said.add(text)
            echo(f"note: {text}")
        return analysis

    return resolve


@click.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--sizes", "sizes", required=True, metavar="NAME=INT,INT,...", callback=bounded_sizes,
              help="The symbol to sweep and its sizes, e.g. --sizes n=64,128,256,512.")
@click.option("--at", "at", multiple=True, metavar="NAME=INT", callback=bounded_sizes,
              help="Hold another symbol at this size (default: its size in the example inputs).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--device-profile", "device_profile", default=None, metavar="h100|h200|a100|a100-40gb|cpu|FILE.toml",
              help="Profile for the predicted times (default: cpu on --device cpu; on cuda a100, a100-40gb, h200 "
                   "or h100 by the GPU's name).")
@click.option("--repeats", type=click.IntRange(min=1), default=7, show_default=True,
              help="Timed blocks per size (median and IQR are over these).")
@click.option("--max-seconds", "max_seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop cleanly, with the sizes done so far, before the sweep runs past this many seconds.")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None,
              help="Write measured against predicted time, and W and D against the size, to this PNG "
                   "(needs matplotlib: pip install 'depthscope[plot]').")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch (default: torch's own choice; 1 gives steadier timings on a busy machine).")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True)
@click.option("--symbolic", "symbolic", multiple=True, metavar="NAME",
              help="Make this integer keyword parameter of the model factory a symbol (repeatable).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@timeout_option
def validate_command(path, sizes, at, device, device_profile, repeats, max_seconds, plot, threads, fmt, engine,
                     symbolic, debug):
    """Time the model file PATH at a sweep of sizes and test work and depth against the measurements."""
    from depthscope.predict.render import render_validation
    from depthscope.predict.validate import run_validation  # numpy, torch: only when the command runs

    sweep = parse_sizes([sizes], "--sizes")
    if len(sweep) != 1:
        raise InputError("--sizes: give one symbol, e.g. --sizes n=64,128,256")
    (symbol, values), = sweep.items()
    if len(values) != len(set(values)):
        raise InputError("--sizes: sizes repeat")
    held = {}
    for name, vals in parse_sizes(at).items():
        if len(vals) != 1:
            raise InputError(f"--at {name}=...: one size per held symbol")
        if name == symbol:
            raise InputError(f"--at {name}: {name} is the swept symbol")
        held[name] = vals[0]
    if plot:
        check_plot_path(plot)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # before the cpu profile reads the thread count
    profile = load_profile(device_profile) if device_profile else None
    result = run_validation(path, symbol, sorted(values), held=held, device=device, repeats=repeats,
                            max_seconds=max_seconds, profile=profile, engine=engine, threads=threads,
                            symbolic=symbolic or None,
                            on_note=lambda reason: click.echo(f"depthscope: {reason}", err=True))
    if plot:
        from depthscope.predict.plot import plot_validation

        plot_validation(result, plot)
        result["plot"] = plot
    if result["stopped_early"]:
        click.echo(f"depthscope: stopped early: {result['stop_reason']}", err=True)
    click.echo(render_validation(result, fmt), nl=False)

