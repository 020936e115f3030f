"""Options the commands share: `--timeout S`, and the bound on sizes given on the command line."""

from __future__ import annotations

import math
import re

import click

from depthscope.clock import start_deadline

MAX_SIZE = 2**63 - 1  # torch's sizes are signed 64-bit integers
_BYTES = re.compile(r"(\d{1,30})\s*([KMGT]i?B?|B)?", re.ASCII | re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30,
          "ti": 2**40}
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


def parse_bytes(value) -> int:
    """A size in bytes: 49152, "48KiB", "50MB", "40MiB" (KB, MB, GB: powers of 10; KiB, MiB, GiB: of 2).

    ValueError, saying what is accepted, for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SIZE:
        return value
    m = _BYTES.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"{str(value)[:40]!r} is not a size in bytes: write e.g. 49152, 48KiB, 50MB or 40MiB")
    unit = (m.group(2) or "").lower().removesuffix("b")
    size = int(m.group(1)) * _UNITS[unit]
    if not 0 < size <= MAX_SIZE:
        raise ValueError(f"{value!r}: a fast memory must be between 1 byte and 2**63 - 1 bytes")
    return size


def _fast_memory(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_bytes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def fast_memory_option(f):
    """--fast-memory BYTES: the fast memory's size for the I/O formulas (else the symbol M stays in them)."""
    return click.option("--fast-memory", "fast_memory", default=None, metavar="BYTES", callback=_fast_memory,
                        help="Fast memory (cache, shared memory) size for the I/O bound: 49152, 48KiB, 50MB, 40MiB; "
                             "without it the I/O formula keeps the symbol M. [tool.depthscope] fast-memory sets "
                             "the default.")(f)
