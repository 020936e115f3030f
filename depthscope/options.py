"""Options the commands share: `--timeout S`, and the bound on sizes given on the command line."""

from __future__ import annotations

import math
import re

import click

from depthscope.clock import start_deadline

MAX_SIZE = 2**63 - 1  # torch's sizes are signed 64-bit integers
MAX_TIMEOUT_S = 10**7  # about 115 days: more than any run, and within what the OS timers take


def _start_timeout(ctx, param, value):
    if value is not None:
        if not math.isfinite(value) or value > MAX_TIMEOUT_S:
            raise click.BadParameter(f"{value} is not a number of seconds between 0 and {MAX_TIMEOUT_S}",
                                     ctx=ctx, param=param)
        start_deadline(value, ctx.info_name)
    return value


def timeout_option(f):
    """--timeout S: the command ends with exit 2 after S seconds, saying what was running (import, export...)."""
    return click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
                        expose_value=False, is_eager=True, callback=_start_timeout,
                        help="Stop after S seconds (exit 2), saying what was running.")(f)


def bounded_sizes(ctx, param, value):
    """Callback for size options (NAME=INT, NAME=INT,INT...): every integer at most 2**63 - 1."""
    texts = value if isinstance(value, (tuple, list)) else (value,)
    for text in texts:
        if not isinstance(text, str):
            continue
        for digits in re.findall(r"\d+", text.partition("=")[2]):
            if len(digits) > 100 or int(digits) > MAX_SIZE:  # (int() refuses over 4300 digits)
                shown = digits if len(digits) <= 24 else f"{digits[:12]}...({len(digits)} digits)"
                raise click.BadParameter(f"{shown} is too large: sizes are at most 2**63 - 1, torch's largest size",
                                         ctx=ctx, param=param)
    return value
