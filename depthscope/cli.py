"""Command line: `depthscope analyze PATH`. `main(argv) -> int` returns the exit code (0, 1, 2 or 101)."""

from __future__ import annotations

import os
import re
import sys
import traceback

import click

from depthscope import clock, guard
from depthscope.engine import ENGINES
from depthscope.errors import EXIT_INTERNAL, EXIT_USAGE, CheckFailed, DepthscopeError, InputError
from depthscope.options import MAX_SIZE, bounded_sizes, fast_memory_option, timeout_option

_AT = re.compile(r"^(\w+)=(\d{1,100})$")


def parse_at(values) -> dict[str, int]:
    """NAME=INT pairs from repeated --at options (names are checked against the model later)."""
    sizes: dict[str, int] = {}
    for text in values:
        m = _AT.match(text.strip())
        if not m or not m.group(1).isidentifier():
            raise InputError(f"--at {text!r}: expected NAME=INT with a positive integer, e.g. --at n=1024")
        value = int(m.group(2))
        if value > MAX_SIZE:
            raise InputError(f"--at {m.group(1)}=...: {value} is too large: sizes are at most 2**63 - 1")
        if m.group(1) in sizes and sizes[m.group(1)] != value:
            raise InputError(f"--at {m.group(1)} given twice ({sizes[m.group(1)]} and {value}): give each size once")
        sizes[m.group(1)] = value
    return sizes


CONFIGURED = ("analyze", "check", "predict", "validate")  # commands whose defaults [tool.depthscope] sets


class _Interrupted(BaseException):
    """Ctrl-C, carried past click (which would turn it into Abort after printing a blank line)."""


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted() from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="depthscope", prog_name="depthscope")
@click.pass_context
def cli(ctx):
    """depthscope: symbolic work and parallel depth of PyTorch models."""
    command = ctx.invoked_subcommand
    argv = (ctx.obj or {}).get("argv", [])
    if command in CONFIGURED and ctx.default_map is None:
        if command == "check" and any(a == "--config" or a.startswith("--config=") for a in argv):
            return  # check reads the pyproject.toml it is given, and its defaults from there
        from depthscope.config import cli_defaults, load_config

        ctx.default_map = cli_defaults(load_config())  # a broken pyproject.toml is exit 2 here


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("--at", "at", multiple=True, metavar="NAME=INT", callback=bounded_sizes,
              help="Evaluate at these sizes (repeat per symbol).")
@click.option("--train", is_flag=True, help="Analyze a training step: forward plus backward of the loss.")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
              help="symbolic: one symbolic export; fitted: exact counts at a sweep of sizes, fitted; "
                   "auto: symbolic, else fitted. [tool.depthscope] engine in pyproject.toml sets the default.")
@click.option("--symbolic", "symbolic", multiple=True, metavar="NAME",
              help="Make this integer keyword parameter of the model factory a symbol (repeatable).")
@click.option("--strict", is_flag=True, help="Exit 1 if any op has no cost rule.")
@click.option("--generate", is_flag=True, help="Analyze generation: prefill of n prompt tokens, one decode step "
              "with a KV cache of c tokens, T new tokens (docs/model-files.md).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@fast_memory_option
@timeout_option
def analyze(path, fmt, at, train, engine, symbolic, strict, generate, debug, fast_memory):
    """Analyze the model file PATH: exact work, depth, parallelism, bytes and I/O, their big-O, the critical path."""
    from depthscope.pipeline import analysis_at, analyze_subject, load_subject
    from depthscope.report import render
    from depthscope.report.table import unmodeled_warning

    sizes = parse_at(at)
    if generate:
        if fast_memory is not None:
            raise InputError("--fast-memory does not combine with --generate: the generation report shows bytes, not the I/O bound")
        return _generate(path, fmt, sizes, train, engine, symbolic, strict)
    subject = load_subject(path, symbolic or None)
    report = analyze_subject(subject, train=train, engine=engine, on_fallback=warn).with_fast_memory(fast_memory)
    if sizes:  # below a Dim's min: the concrete capture's Analysis (pipeline.analysis_at), said on stderr
        report, text = analysis_at(subject, report, sizes, engine=engine, on_fallback=warn)
        report = report.with_fast_memory(fast_memory)
        if text:
            click.echo(f"depthscope: note: {text}", err=True)
        report.evaluate(**sizes)  # validates names and ranges before rendering
    click.echo(render(report, fmt, sizes or None), nl=False)
    if report.unmodeled and fmt != "table":
        warn(unmodeled_warning(report).removeprefix("WARNING: "))
    if strict and report.unmodeled:
        ops = ", ".join(op for op, _ in report.unmodeled)
        raise CheckFailed(f"--strict: {len(report.unmodeled)} op(s) have no cost rule: {ops}")


def _generate(path, fmt, sizes, train, engine, symbolic, strict):
    """analyze --generate: the prefill, decode-step and generation analyses of a decoder-only LM."""
    from depthscope.generate.analysis import generation_analysis
    from depthscope.pipeline import load_subject
    from depthscope.report.generate import render as render_generation

    if train:
        raise InputError("--generate analyzes inference; it does not combine with --train")
    gen = generation_analysis(load_subject(path, symbolic or None), engine=engine, on_fallback=warn)
    gen = gen.at(sizes)  # below a Dim's min (b=1): each part from a concrete capture (pipeline.analysis_at)
    for text in gen.notes:
        click.echo(f"depthscope: note: {text}", err=True)
    click.echo(render_generation(gen, fmt, sizes or None), nl=False)
    unmodeled = dict(gen.prefill.unmodeled)
    for op, count in gen.decode_step.unmodeled:
        unmodeled[op] = unmodeled.get(op, 0) + count
    if unmodeled:
        warn(f"{sum(unmodeled.values())} node(s) of the prefill and decode step have no cost rule and were counted "
             f"at the default (work = output elements, depth 1): {', '.join(unmodeled)}")
    if strict and unmodeled:
        raise CheckFailed(f"--strict: {len(unmodeled)} op(s) have no cost rule: {', '.join(unmodeled)}")


def warn(text: str) -> None:
    """One warning line on stderr: `depthscope: warning: ...`."""
    click.echo(f"depthscope: warning: {text}", err=True)


@cli.command("rules")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def rules_command(fmt):
    """List every modeled op with its work and depth formulas."""
    import json

    from tabulate import tabulate

    from depthscope.cost.registry import describe, modeled_ops, op_name

    rows = [(op_name(op), *describe(rule)) for op, rule in modeled_ops()]
    if fmt == "json":
        click.echo(json.dumps([{"op": op, "work": w, "depth": d} for op, w, d in rows], indent=1))
    else:
        click.echo(tabulate(rows, ["op", "work", "depth"], tablefmt="simple"))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code instead of exiting."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug or "depthscope.capture.export" in sys.modules:  # importing capture imports torch: only when needed
        from depthscope.capture import export as capture

        capture.VERBOSE = debug
    command = next((a for a in argv if not a.startswith("-")), "")
    guard.forget_model()
    clock.enable_status(True)
    try:
        with guard.exits_guarded():
            cli.main(args=argv, prog_name="depthscope", standalone_mode=False, obj={"argv": argv})
        return 0
    except clock.DeadlineReached as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"depthscope: error: {exc}", err=True)
        return EXIT_USAGE
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("depthscope: aborted", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"depthscope: error: {_one_line_usage(exc, command)}", err=True)
        return EXIT_USAGE if exc.exit_code not in (0, 1) else exc.exit_code
    except DepthscopeError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"depthscope: {'check failed' if isinstance(exc, CheckFailed) else 'error'}: {exc}", err=True)
        return exc.exit_code
    except (KeyboardInterrupt, _Interrupted):
        click.echo("depthscope: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - anything else is our bug
        return _internal(exc, debug)
    except BaseException as exc:  # noqa: BLE001 - sys.exit, os._exit, GeneratorExit... from the model's code
        message = guard.escaped_model_exit(exc, command)
        if message is None:
            return _internal(exc, debug)
        if debug:
            traceback.print_exc()
        click.echo(f"depthscope: error: {message}", err=True)
        return EXIT_USAGE
    finally:
        clock.stop_deadline()
        clock.enable_status(False)


def _internal(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    text = guard.exception_text(exc, 2000)
    click.echo(f"depthscope: internal error: {type(exc).__name__}: {text} (rerun with --debug for the traceback)", err=True)
    return EXIT_INTERNAL


def _one_line_usage(exc: click.ClickException, command: str) -> str:
    """click's message on one line, pointing at --help (not click's Usage/Try/Error block)."""
    text = " ".join(exc.format_message().split())
    if isinstance(exc, click.UsageError):
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else " ".join(["depthscope", command][: 2 if command in cli.commands else 1])
        text += f" (see '{where} --help')"
    return text


def entry_point() -> None:
    clock.allow_hard_exit()  # --timeout may end this process if the model's code will not stop
    code = main()
    # Skip the interpreter's teardown: freeing an exported 80-layer program and its analysis object by object takes
    # about a second (bench/RESULTS.md), and nothing is left to run: every file depthscope writes is closed and
    # replaced atomically before main returns.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (depthscope ... | head): nothing more can be said
            pass
    os._exit(code)


# predict and validate (docs/predict-and-validate.md)
from depthscope.predict.command import predict_command, validate_command  # noqa: E402

cli.add_command(predict_command)
cli.add_command(validate_command)


from depthscope.check.command import check_command  # noqa: E402 - registered after the group is defined

cli.add_command(check_command)
