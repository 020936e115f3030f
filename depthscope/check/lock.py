"""The baseline lock file (depthscope.lock.json): each model's recorded class and formula per metric.

`depthscope check --update` writes it; a metric without a budget is compared with it. Its content is not
trusted: it is read with limits on size and nesting, without evaluating anything, and each metric's readable
`class` must be the class its `terms` give (a lock saying log(n) over terms saying n is refused, exit 2).
Updates hold an exclusive lock on a sibling file, re-read the lock under it, merge and replace it atomically,
so concurrent `check --update` runs on different models keep each other's entries.
"""

from __future__ import annotations

import json
import os

from depthscope.check.budget import BudgetError
from depthscope.check.files import LockTimeout, NotRegular, TooLarge, exclusive, read_regular, write_atomic
from depthscope.check.validate import checked_class
from depthscope.config import METRICS
from depthscope.errors import InputError

LOCK_FORMAT = 1
ADDED_LATER = ("bytes",)  # metrics a lock written by an earlier depthscope lacks: not locked until --update
MAX_LOCK = 16 << 20  # bytes
HINT = "fix it or rewrite it with depthscope check --update"


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:80]!r} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: bytes):
    """JSON without NaN/Infinity or repeated keys; ValueError (also for nesting too deep or bad UTF-8)."""
    try:
        return json.loads(text.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read_lock(path: str, shown: str) -> dict[str, dict]:
    """The lock's models ({} when the file does not exist); a malformed lock is a usage error (exit 2)."""
    try:
        raw = read_regular(path, MAX_LOCK)
    except FileNotFoundError:
        return {}
    except TooLarge:
        raise InputError(f"{shown}: larger than {MAX_LOCK >> 20} MiB; {HINT}") from None
    except NotRegular:
        raise InputError(f"{shown}: not a regular file; {HINT}") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = parse_json(raw)
    except ValueError as exc:
        raise InputError(f"{shown}: not valid JSON ({str(exc)[:200]}); {HINT}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise InputError(f"{shown}: expected an object with \"models\"; {HINT}")
    if data.get("format", LOCK_FORMAT) != LOCK_FORMAT or isinstance(data.get("format"), bool):
        raise InputError(f"{shown}: lock format {str(data.get('format'))[:40]} is not {LOCK_FORMAT}; {HINT}")
    models = {}
    for name, entry in data["models"].items():
        label = name[:200].encode("unicode_escape").decode("ascii")
        if not isinstance(entry, dict):
            raise InputError(f"{shown}: {label}: expected an object; {HINT}")
        if "engine" in entry and not isinstance(entry["engine"], str):
            raise InputError(f"{shown}: {label}: \"engine\" must be a string; {HINT}")
        for metric in METRICS:
            if metric in ADDED_LATER and metric not in entry:
                continue
            m = entry.get(metric)
            if not isinstance(m, dict) or not isinstance(m.get("formula"), str) or "class" not in m:
                raise InputError(f"{shown}: {label}: {metric} needs \"class\", \"terms\" and \"formula\"; {HINT}")
            try:
                m["parsed"] = checked_class(m["class"], m.get("terms"), where=f"{shown}: {label}: {metric}")
            except BudgetError as exc:
                raise InputError(f"{exc}; {HINT}") from None
        models[name] = entry
    return models


def lock_entry(summary: dict) -> dict:
    """What the lock records of a model's summary: its engine, and each metric's class, terms and formula."""
    out = {"engine": summary["engine"]}
    for metric in METRICS:
        s = summary[metric]
        out[metric] = {"class": s["class"], "terms": s["terms"], "formula": s["formula"]}
    return out


def lock_text(models: dict[str, dict]) -> str:
    clean = {name: {k: ({kk: vv for kk, vv in v.items() if kk != "parsed"} if isinstance(v, dict) else v)
                    for k, v in entry.items()} for name, entry in models.items()}
    # one line per metric keeps the file readable and its diffs small
    lines = ["{", f'  "format": {LOCK_FORMAT},', '  "models": {']
    for i, (name, entry) in enumerate(sorted(clean.items())):
        lines.append(f"    {json.dumps(name)}: {{")
        items = sorted(entry.items())
        for j, (k, v) in enumerate(items):
            comma = "," if j < len(items) - 1 else ""
            lines.append(f"      {json.dumps(k)}: {json.dumps(v, sort_keys=True)}{comma}")
        lines.append("    }" + ("," if i < len(clean) - 1 else ""))
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def write_lock(path: str, models: dict[str, dict]) -> None:
    write_atomic(path, lock_text(models))


def guard_path(path: str) -> str:
    """The sibling file whose exclusive lock serialises updates of the lock at `path`."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.update")


def update_lock(path: str, shown: str, entries: dict[str, dict], merge: bool, wait: float = 120.0) -> None:
    """Record `entries` in the lock: merged into the entries on disk now (`merge`), or as the whole lock.

    Under an exclusive lock of the sibling guard file, the lock is re-read (a malformed one counts as empty, as
    --update replaces it), merged and replaced atomically. InputError (exit 2) with one line when it cannot be
    written."""
    try:
        with exclusive(guard_path(path), wait=wait):
            models = {}
            if merge:
                try:
                    models = read_lock(path, shown)
                except InputError:
                    models = {}
            models.update(entries)
            write_lock(path, models)
    except LockTimeout:
        raise InputError(f"{shown}: another depthscope check --update held {os.path.basename(guard_path(path))} "
                         f"for over {wait:g} s; try again when it is done") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot write: {exc.strerror or exc}") from None


__all__ = ["LOCK_FORMAT", "guard_path", "lock_entry", "lock_text", "parse_json", "read_lock", "update_lock",
           "write_lock"]
