"""The baseline lock file (depthscope.lock.json): each model's recorded class and formula per metric.

`depthscope check --update` writes it; a metric without a budget is compared with it.
"""

from __future__ import annotations

import json
import os

from depthscope.check.budget import BudgetError
from depthscope.check.cache import write_atomic
from depthscope.complexity import Class
from depthscope.config import METRICS
from depthscope.errors import InputError

LOCK_FORMAT = 1


def read_lock(path: str, shown: str) -> dict[str, dict]:
    """The lock's models ({} when the file does not exist); a malformed lock is a usage error (exit 2)."""
    if not os.path.exists(path):
        return {}
    hint = "fix it or rewrite it with depthscope check --update"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise InputError(f"{shown}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InputError(f"{shown}: not valid JSON ({exc}); {hint}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise InputError(f"{shown}: expected an object with \"models\"; {hint}")
    if data.get("format", LOCK_FORMAT) != LOCK_FORMAT:
        raise InputError(f"{shown}: lock format {data.get('format')!r} is not {LOCK_FORMAT}; {hint}")
    models = {}
    for name, entry in data["models"].items():
        if not isinstance(entry, dict):
            raise InputError(f"{shown}: {name}: expected an object; {hint}")
        for metric in METRICS:
            m = entry.get(metric)
            if not isinstance(m, dict) or not isinstance(m.get("formula"), str):
                raise InputError(f"{shown}: {name}: {metric} needs \"class\", \"terms\" and \"formula\"; {hint}")
            try:
                m["parsed"] = Class.from_json(m.get("terms"), where=f"{shown}: {name}: {metric}")
            except BudgetError as exc:
                raise InputError(f"{exc}; {hint}") from None
        models[name] = entry
    return models


def lock_entry(summary: dict) -> dict:
    """What the lock records of a model's summary: its engine, and each metric's class, terms and formula."""
    out = {"engine": summary["engine"]}
    for metric in METRICS:
        s = summary[metric]
        out[metric] = {"class": s["class"], "terms": s["terms"], "formula": s["formula"]}
    return out


def write_lock(path: str, models: dict[str, dict]) -> None:
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
    write_atomic(path, "\n".join(lines) + "\n")


__all__ = ["LOCK_FORMAT", "lock_entry", "read_lock", "write_lock"]
