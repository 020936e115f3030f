"""Validating what `depthscope check` reads back: a model summary (from the cache or an analysis subprocess).

Nothing in a cache entry is trusted: every summary is checked for its shape and types, and every class written
as text must be the class its structured `terms` give, before any of it is compared with a budget. A failure is
a ValueError with one line saying what is wrong, so the caller can re-analyze (cache) or report it.
"""

from __future__ import annotations

import math

from depthscope.check.budget import parse_budget
from depthscope.complexity import Class
from depthscope.config import GENERATE_METRICS, METRICS
from depthscope.errors import BudgetError

EXACTNESS = ("exact", "fitted-exact", "approximate")
ENGINES = ("symbolic", "fitted")
MAX_TEXT = 1 << 20  # characters in one formula or message
MAX_ITEMS = 10_000  # entries in one list


def checked_class(text, terms, where: str) -> Class:
    """The class of `terms`, which the readable `text` must state: a lock or cache entry that says `log(n)` while its
    terms say `n` is refused (BudgetError), whichever of the two was edited."""
    if not isinstance(text, str):
        raise BudgetError(f"{where}: \"class\" must be a string, got {type(text).__name__}")
    cls = Class.from_json(terms, where=where)
    if text.strip() == cls.text():
        return cls
    try:
        same = parse_budget(text).same_as(cls)
    except BudgetError:
        same = False
    if not same:
        raise BudgetError(f"{where}: \"class\" says {text[:80]!r} but its terms say {cls.text()!r}")
    return cls


def _fail(where: str, what: str):
    raise ValueError(f"{where}: {what}")


def _string(value, where: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        _fail(where, "expected a string")


def _list(value, where: str) -> list:
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        _fail(where, "expected a list")
    return value


def _number(value, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(where, "expected a number")
    if isinstance(value, float) and math.isnan(value):
        _fail(where, "expected a number, not NaN")


def _pieces(value, where: str, keys: tuple[str, ...]) -> None:
    for i, item in enumerate(_list(value, where)):
        at = f"{where}[{i}]"
        if not isinstance(item, dict) or set(item) != set(keys):
            _fail(at, f"expected an object with {', '.join(keys)}")
        for key in keys:
            if key == "class":
                try:
                    Class.from_json(item["class"], where=f"{at}.class")
                except BudgetError as exc:
                    raise ValueError(str(exc)) from None
            elif key == "ref":
                _number(item["ref"], f"{at}.ref")
            else:
                _string(item[key], f"{at}.{key}")


def validate_summary(summary, fmt: int) -> dict:
    """`summary` itself when it is a well-formed summary of format `fmt`, else ValueError saying why."""
    if not isinstance(summary, dict):
        _fail("summary", "expected an object")
    required = {"format", "model", "engine", "mode", "symbols", "fallback", "exactness", "reasons", "unmodeled",
                "heldout_passed", "depth_groups", "work_ops", "bytes_ops", *METRICS}
    missing = sorted(required - set(summary))
    if missing:
        _fail("summary", f"missing {', '.join(missing)}")
    if summary["format"] != fmt or isinstance(summary["format"], bool):
        _fail("summary.format", f"expected {fmt}")
    _string(summary["model"], "summary.model")
    if summary["engine"] not in ENGINES:
        _fail("summary.engine", f"expected one of {', '.join(ENGINES)}")
    _string(summary["mode"], "summary.mode")
    for i, name in enumerate(_list(summary["symbols"], "summary.symbols")):
        _string(name, f"summary.symbols[{i}]")
    _string(summary["fallback"], "summary.fallback", optional=True)
    if summary["exactness"] not in EXACTNESS:
        _fail("summary.exactness", f"expected one of {', '.join(EXACTNESS)}")
    for i, reason in enumerate(_list(summary["reasons"], "summary.reasons")):
        _string(reason, f"summary.reasons[{i}]")
    for i, item in enumerate(_list(summary["unmodeled"], "summary.unmodeled")):
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str) or len(item[0]) > 1000
                or isinstance(item[1], bool) or not isinstance(item[1], int) or item[1] < 1):
            _fail(f"summary.unmodeled[{i}]", "expected [op, count]")
    if summary["heldout_passed"] not in (True, False, None):
        _fail("summary.heldout_passed", "expected true, false or null")
    _pieces(summary["depth_groups"], "summary.depth_groups", ("module", "op", "class", "ref"))
    _pieces(summary["work_ops"], "summary.work_ops", ("op", "module", "class", "ref"))
    _pieces(summary["bytes_ops"], "summary.bytes_ops", ("op", "module", "class", "ref"))
    for metric in METRICS + tuple(g for g in GENERATE_METRICS if g in summary):
        m = summary[metric]
        where = f"summary.{metric}"
        if not isinstance(m, dict) or set(m) != {"class", "terms", "formula"}:
            _fail(where, "expected an object with class, terms and formula")
        _string(m["formula"], f"{where}.formula")
        try:
            checked_class(m["class"], m["terms"], where)
        except BudgetError as exc:
            raise ValueError(str(exc)) from None
    return summary


def validate_inputs(inputs) -> dict:
    """What an analysis read besides its imports (check/record.py): {"files": {path: digest or null}, "dirs":
    {path: listing or null}, "env": {name: value or null}, "cwd": directory or null}."""
    if not isinstance(inputs, dict) or set(inputs) != {"files", "dirs", "env", "cwd"}:
        _fail("inputs", "expected an object with files, dirs, env and cwd")
    for kind in ("files", "dirs", "env"):
        table = inputs[kind]
        if not isinstance(table, dict) or len(table) > 100_000:
            _fail(f"inputs.{kind}", "expected an object")
        for name, value in table.items():
            if len(name) > 8192 or not (value is None or (isinstance(value, str) and len(value) <= MAX_TEXT)):
                _fail(f"inputs.{kind}", f"malformed entry for {name[:80]!r}")
    _string(inputs["cwd"], "inputs.cwd", optional=True)
    return inputs


__all__ = ["EXACTNESS", "checked_class", "validate_inputs", "validate_summary"]
