"""Comparing a model's summary with its budgets and its locked classes: the findings of `depthscope check`.

A budget is compared term by term (a breach fails the check); a metric without a budget is compared with the
lock (a class that grew fails it; a class that improved or a formula that changed is a note).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from depthscope.check.summary import op_display
from depthscope.complexity import Class, Term
from depthscope.config import GENERATE_METRICS, METRICS, CheckEntry, op_allowed
from depthscope.errors import EXIT_USAGE

FAILING = ("breach", "regression", "unmodeled", "approximate")  # finding kinds that fail the check (exit 1)
UNMODELED_REASON = "no cost rule"  # how the Analysis words the reason that unmodeled ops make it approximate


@dataclass
class Finding:
    path: str
    kind: str  # "breach", "regression", "unmodeled", "approximate", "error", "info"
    message: str
    metric: str | None = None
    found: str | None = None
    limit: str | None = None
    source: str | None = None  # "budget" or "lock"
    cause: str | None = None
    exit_code: int = 0

    @property
    def failing(self) -> bool:
        return self.kind in FAILING

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "exit_code" or self.kind == "error"}


@dataclass
class ModelResult:
    entry: CheckEntry
    engine: str
    summary: dict | None = None
    cached: bool = False
    miss: str | None = None  # why a cache entry was not used (None: there was none, or it was used)
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def _where(summary: dict, module: str) -> str:
    return module or summary.get("model") or "the model"


def explain(metric: str, summary: dict, limit: Class, excess: list[Term], source: str) -> str:
    """The ops behind a breach: the critical path's heaviest pieces (depth) or the heaviest op (work, bytes)."""
    parts = []
    if metric == "depth":
        groups = summary.get("depth_groups") or []
        over = [g for g in groups if Class.from_json(g["class"]).excess(limit)]
        chosen = over[:3] if over else groups[:1]
        if chosen:
            parts.append("critical path through " + ", ".join(f"{_where(summary, g['module'])} ({g['op']})"
                                                               for g in chosen))
    else:
        ops = summary.get(f"{metric}_ops") or []
        over = [o for o in ops if Class.from_json(o["class"]).excess(limit)]
        chosen = (over or ops)[:1]
        if chosen:
            parts.append(f"heaviest op {chosen[0]['op']} in {_where(summary, chosen[0]['module'])}")
    text = "; ".join(parts)
    missing = sorted({n for t in excess for n in t.names} - limit.names)
    if missing:
        names = ", ".join(missing)
        them = "it" if len(missing) == 1 else "them"
        verb = "is" if len(missing) == 1 else "are"
        text += f" ({names} {verb} not in the {source}, which treats {them} as constant)"
    opaque = sorted({o for t in excess for o in t.opaque})
    if opaque:
        text += f" (the factor {', '.join(opaque)} has no class a budget can state)"
    return text.strip()


def trust(result: ModelResult) -> None:
    """Findings for what makes the numbers untrustworthy: ops without a cost rule (each counted as one step per
    output element, so an O(n**2) op can pass a budget of n) and an approximate analysis. Both fail the check
    unless pyproject.toml allows them (allow-unmodeled, allow-approximate), and both are shown either way."""
    entry, summary = result.entry, result.summary
    path = entry.key
    unmodeled = [(op, count) for op, count in summary.get("unmodeled") or []]
    blocked = [(op, n) for op, n in unmodeled if not op_allowed(op, entry.allow_unmodeled)]
    allowed = [(op, n) for op, n in unmodeled if op_allowed(op, entry.allow_unmodeled)]
    listing = lambda ops: ", ".join(f"{op_display(op)} (x{n})" for op, n in ops)  # noqa: E731
    if blocked:
        names = ", ".join(f'"{_allow_name(op)}"' for op, _ in blocked)
        ops = "op has" if len(blocked) == 1 else "ops have"
        result.findings.append(Finding(
            path, "unmodeled", f"{path}: {len(blocked)} {ops} no cost rule, so the work and depth count each call "
            f"as one step per output element: {listing(blocked)}; give {'it' if len(blocked) == 1 else 'them'} a "
            f"cost rule, or allow {'it' if len(blocked) == 1 else 'them'} with allow-unmodeled = [{names}] in "
            "[tool.depthscope] or this model's [[tool.depthscope.check]] entry", cause=listing(blocked)))
    if allowed:
        result.findings.append(Finding(path, "info", f"{path}: allowed without a cost rule (counted as one step per "
                                       f"output element): {listing(allowed)}", cause=listing(allowed)))
    reasons = [r for r in summary.get("reasons") or [] if not (unmodeled and UNMODELED_REASON in r)]
    heldout_failed = summary.get("heldout_passed") is False
    if heldout_failed and not any("held-out" in r or "heldout" in r for r in reasons):
        reasons.append("the fitted formulas do not reproduce the held-out sizes")
    approximate = heldout_failed or (summary.get("exactness") == "approximate" and (reasons or not unmodeled))
    if approximate:
        why = "; ".join(reasons) or "see depthscope analyze"
        if entry.allow_approximate:
            result.findings.append(Finding(path, "info", f"{path}: the analysis is approximate (allowed by "
                                           f"allow-approximate): {why}", cause=why))
        else:
            result.findings.append(Finding(
                path, "approximate", f"{path}: the analysis is approximate, so its classes cannot be trusted: {why}; "
                "set allow-approximate = true in [tool.depthscope] or this model's entry to accept it", cause=why))


def _allow_name(op: str) -> str:
    """gatetest.pairwise.default -> gatetest::pairwise; aten.gelu.default -> aten.gelu (what allow-unmodeled takes)."""
    parts = op.split(".")
    if len(parts) >= 2 and parts[0] != "aten":
        return f"{parts[0]}::{parts[1]}"
    return ".".join(parts[:2])


def evaluate(result: ModelResult, locked: dict | None, lock_name: str, update: bool) -> None:
    entry, summary = result.entry, result.summary
    path = entry.key
    trust(result)
    for metric in METRICS + tuple(m for m in GENERATE_METRICS if m in entry.budgets):
        if metric not in summary:
            result.findings.append(Finding(path, "error", f"{path}: the analysis has no {metric} (rerun with "
                                           "--no-cache)", exit_code=EXIT_USAGE))
            continue
        found = Class.from_json(summary[metric]["terms"])
        status = {"class": found.text(), "formula": summary[metric]["formula"]}
        lock = None if locked is None else locked.get(metric)  # (a lock from before bytes has no "bytes")
        if lock is not None:
            status["locked"] = lock["parsed"].text()
        budget = entry.budgets.get(metric)
        if locked is not None and lock is None and budget is None and not update:
            result.findings.append(Finding(path, "info", f"{path}: {metric} is not in {lock_name} (written before "
                                           f"depthscope counted it); run depthscope check --update to record it",
                                           metric, found.text(), None, "lock"))
        if budget is not None:
            status["budget"] = budget.text()
            excess = found.excess(budget)
            status["status"] = "breach" if excess else "pass"
            if excess:
                cause = explain(metric, summary, budget, excess, "budget")
                result.findings.append(Finding(
                    path, "breach", f"{path}: {metric} {found.big_o()} exceeds budget {budget.big_o()}"
                    + (f"; {cause}" if cause else ""), metric, found.text(), budget.text(), "budget", cause))
        if lock is not None and not update:
            old = lock["parsed"]
            excess = found.excess(old)
            if excess and budget is None:
                status["status"] = "regression"
                cause = explain(metric, summary, old, excess, "lock")
                result.findings.append(Finding(
                    path, "regression", f"{path}: {metric} {found.big_o()} exceeds locked {old.big_o()} in "
                    f"{lock_name}" + (f"; {cause}" if cause else ""), metric, found.text(), old.text(), "lock", cause))
                result.metrics[metric] = status
                continue
            status.setdefault("status", "pass")
            rerun = "run depthscope check --update to record it"
            if excess:
                msg = f"{path}: {metric} grew from {old.big_o()} in {lock_name} to {found.big_o()}, within its budget"
            elif not old.within(found):
                msg = f"{path}: {metric} improved from {old.big_o()} in {lock_name} to {found.big_o()}"
            elif lock["formula"] != summary[metric]["formula"]:
                msg = (f"{path}: {metric} changed by a constant factor within {found.big_o()}: "
                       f"{lock['formula']} -> {summary[metric]['formula']}")
            else:
                msg = None
            if msg:
                result.findings.append(Finding(path, "info", f"{msg} ({rerun})", metric, found.text(), old.text(),
                                               "lock"))
        result.metrics[metric] = status
    if not entry.budgets and locked is None and not update:
        result.findings.append(Finding(
            path, "error", f"{path}: nothing to check against: give it a work, depth or bytes budget in "
            f"[[tool.depthscope.check]], or record a baseline with depthscope check --update", exit_code=EXIT_USAGE))


__all__ = ["FAILING", "Finding", "ModelResult", "evaluate", "explain", "trust"]
