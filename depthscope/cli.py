"""Command line: `depthscope analyze PATH`. `main(argv) -> int` returns the exit code (0, 1, 2 or 101)."""

from __future__ import annotations

import os
import re
import sys
import traceback

import click

from depthscope.engine import ENGINES

from depthscope.errors import EXIT_INTERNAL, EXIT_USAGE, CheckFailed, DepthscopeError, InputError

_AT = re.compile(r"^([A-Za-z_]\w*)=(\d+)$")


def parse_at(values) -> dict[str, int]:
    """NAME=INT pairs from repeated --at options (names are checked against the model later)."""
    sizes: dict[str, int] = {}
    for text in values:
        m = _AT.match(text.strip())
        if not m:
            raise InputError(f"--at {text!r}: expected NAME=INT with a positive integer, e.g. --at n=1024")
        sizes[m.group(1)] = int(m.group(2))
    return sizes


CONFIGURED = ("analyze", "check", "predict", "validate")  # commands whose defaults [tool.depthscope] sets


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--at", "at", multiple=True, metavar="NAME=INT", help="Evaluate at these sizes (repeat per symbol).")
@click.option("--train", is_flag=True, help="Analyze a training step: forward plus backward of the loss.")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
              help="symbolic: one symbolic export; fitted: exact counts at a sweep of sizes, fitted; "
                   "auto: symbolic, else fitted. [tool.depthscope] engine in pyproject.toml sets the default.")
@click.option("--symbolic", "symbolic", multiple=True, metavar="NAME",
              help="Make this integer keyword parameter of the model factory a symbol (repeatable).")
@click.option("--strict", is_flag=True, help="Exit 1 if any op has no cost rule.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def analyze(path, fmt, at, train, engine, symbolic, strict, debug):
    """Analyze the model file PATH: exact work, depth and parallelism, their big-O, and the critical path."""
    from depthscope.pipeline import analyze_file
    from depthscope.report import render
    from depthscope.report.table import unmodeled_warning

    sizes = parse_at(at)
    report = analyze_file(path, train=train, engine=engine, symbolic=symbolic or None,
                          on_fallback=lambda reason: click.echo(f"depthscope: {reason}", err=True))
    if sizes:
        report.evaluate(**sizes)  # validates names and ranges before rendering
    click.echo(render(report, fmt, sizes or None), nl=False)
    if report.unmodeled and fmt != "table":
        click.echo(unmodeled_warning(report), err=True)
    if strict and report.unmodeled:
        ops = ", ".join(op for op, _ in report.unmodeled)
        raise CheckFailed(f"--strict: {len(report.unmodeled)} op(s) have no cost rule: {ops}")


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
    try:
        cli.main(args=argv, prog_name="depthscope", standalone_mode=False, obj={"argv": argv})
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("depthscope: aborted", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if exc.exit_code not in (0, 1) else exc.exit_code
    except DepthscopeError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"depthscope: {'check failed' if isinstance(exc, CheckFailed) else 'error'}: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("depthscope: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - anything else is our bug
        if debug:
            traceback.print_exc()
        click.echo(f"depthscope: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        return EXIT_INTERNAL


def entry_point() -> None:
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
