"""`depthscope check`: complexity budgets from pyproject.toml, a baseline lock file, and an analysis cache.

For every `[[tool.depthscope.check]]` entry (or model path on the command line) the model's big-O work and
depth are compared term by term with its budgets (see depthscope/check/budget.py); a metric without a budget
is compared with the class recorded in depthscope.lock.json (`depthscope check --update` writes it). Exit
codes: 0 pass, 1 a budget exceeded or a class grew against the lock, 2 a configuration or usage error
(including a model that cannot be analyzed), 101 an internal error.

Each model is analyzed in a subprocess of its own (check/isolate.py, check/worker.py) under a timeout, so a model
file that exits, raises a BaseException, loops or prints cannot decide the check's exit code or output.

The pieces: check/summary.py (what an analysis contributes), check/cache.py (signed analyses cached in
.depthscope_cache/, re-checked against what the model read: check/record.py, check/signing.py), check/lock.py
(the lock file), check/compare.py (the findings), check/render.py (text, GitHub annotations, JSON). A check of
unchanged models neither re-analyzes them nor imports torch.
"""

from __future__ import annotations

import os
import time
import traceback

import click

from depthscope.check.budget import BudgetError
from depthscope.check.cache import Cache
from depthscope.check.compare import Finding, ModelResult, evaluate
from depthscope.check.isolate import AnalysisFailed, analyze_isolated
from depthscope.check.lock import lock_entry, read_lock, update_lock
from depthscope.check.render import render_github, render_json, render_text
from depthscope.config import ENGINES, CheckEntry, Config, load_config, timeout_seconds
from depthscope.errors import EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_USAGE, CheckFailed, DepthscopeError, InputError


def _targets(config: Config, paths: tuple[str, ...]) -> list[CheckEntry]:
    if not paths:
        if not config.entries:
            where = os.path.relpath(config.pyproject) if config.pyproject else "no pyproject.toml found"
            raise InputError(f"no models to check ({where}): add [[tool.depthscope.check]] entries with path = "
                             "\"...\" to pyproject.toml, or pass model paths")
        return list(config.entries)
    by_path = {e.abspath: e for e in config.entries}
    out = []
    for p in paths:
        abspath = os.path.abspath(p)
        if not os.path.isfile(abspath):
            raise InputError(f"{p}: no such model file")
        entry = by_path.get(abspath) or CheckEntry(config.display_path(abspath), abspath, configured=False)
        if entry not in out:
            out.append(entry)
    return out


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="The pyproject.toml to read (default: the nearest one in or above the current directory).")
@click.option("--update", is_flag=True, help="Write the analyzed classes and formulas to the lock file.")
@click.option("--lock", "lock", default=None, metavar="FILE",
              help="Lock file, relative to pyproject.toml [default: tool.depthscope lock, else depthscope.lock.json].")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text", show_default=True,
              help="github: workflow annotations (::error file=...::message).")
@click.option("--engine", type=click.Choice(list(ENGINES)), default=None,
              help="Engine for entries without their own [default: tool.depthscope engine, else auto].")
@click.option("--no-cache", is_flag=True, help="Re-analyze every model (the cache is still refreshed).")
@click.option("--cache-dir", default=None, metavar="DIR",
              help="Cache directory, relative to pyproject.toml [default: .depthscope_cache].")
@click.option("--timeout", "timeout", type=float, default=None, metavar="SECONDS",
              help="Stop a model's analysis after this long (an error, exit 2) [default: tool.depthscope timeout, "
                   "else 1800].")
@click.option("-v", "--verbose", is_flag=True, help="One line per model, and why a fallback happened.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def check_command(paths, config_path, update, lock, fmt, engine, no_cache, cache_dir, timeout, verbose, debug):
    """Check models against the complexity budgets in pyproject.toml ([[tool.depthscope.check]]) or the lock.

    Exit 0 when every model is within its budgets and no class grew against depthscope.lock.json, 1 when one
    is over (or has ops without a cost rule, or an approximate analysis, unless allowed), 2 for configuration or
    usage errors and models that cannot be analyzed. Each model is analyzed in a subprocess of its own.
    """
    start = time.perf_counter()
    config = load_config(config_path)
    settings = config.settings
    engine_default = engine or settings["engine"]
    timeout = settings["timeout"] if timeout is None else timeout_seconds(timeout, "--timeout")
    lock_path = config.resolve(lock or settings["lock"])
    lock_name = config.display_path(lock_path)
    cache = Cache(config.resolve(cache_dir or settings["cache-dir"]), enabled=True)
    use_cache = not no_cache and settings["cache"]
    targets = _targets(config, paths)
    try:
        lock_models = read_lock(lock_path, lock_name)
    except InputError as exc:
        if not update:
            raise
        click.echo(f"depthscope: warning: {exc}; --update replaces it", err=True)
        lock_models = {}

    results: list[ModelResult] = []
    for entry in targets:
        eng = entry.engine or engine_default
        result = ModelResult(entry, eng)
        results.append(result)
        t0 = time.perf_counter()
        try:
            _analyze(result, cache, use_cache, config.root, timeout, debug)
        except DepthscopeError as exc:
            if debug:
                click.echo(getattr(exc, "detail", "") or traceback.format_exc(), err=True, nl=False)
            result.findings.append(Finding(entry.key, "error", _error_message(entry, exc), exit_code=exc.exit_code))
        except Exception as exc:  # noqa: BLE001 - report it against the model, keep checking the others
            if debug:
                traceback.print_exc()
            result.findings.append(Finding(entry.key, "error", f"{entry.key}: internal error: {type(exc).__name__}: "
                                           f"{exc} (rerun with --debug for the traceback)", exit_code=EXIT_INTERNAL))
        result.seconds = time.perf_counter() - t0
        if result.summary is not None:
            if result.summary.get("fallback") and fmt == "text":
                reason = result.summary["fallback"] if verbose else "symbolic capture failed; -v says why"
                click.echo(f"depthscope: {entry.key}: analyzed with the fitted engine ({reason})", err=True)
            try:
                evaluate(result, lock_models.get(entry.key), lock_name, update)
            except BudgetError as exc:  # (summaries are validated first: kept as a usage error all the same)
                result.findings.append(Finding(entry.key, "error", f"{entry.key}: {exc}", exit_code=EXIT_USAGE))
    if use_cache and cache.signing_key_file and _inside(cache.signing_key_file, config.root):
        click.echo(f"depthscope: warning: the cache key {config.display_path(cache.signing_key_file)} is inside the "
                   "project: whoever can commit there can sign cache entries; keep it outside (docs/check.md)", err=True)
    if cache.unavailable and use_cache:
        click.echo(f"depthscope: warning: the analysis cache is off: no key to sign it ({cache.unavailable}); set "
                   "DEPTHSCOPE_CACHE_KEY_FILE to a writable path", err=True)

    findings = [f for r in results for f in r.findings]
    errors = [f for f in findings if f.kind == "error"]
    failing = [f for f in findings if f.failing]

    lock_info = {"path": lock_name, "updated": False}
    if update:
        if errors:
            lock_info["skipped"] = "errors"
        else:
            # with paths, merged into the lock as it is on disk when written (another update may have run)
            update_lock(lock_path, lock_name, {r.entry.key: lock_entry(r.summary) for r in results}, merge=bool(paths))
            lock_info["updated"] = True

    cached = sum(r.cached for r in results)
    elapsed = time.perf_counter() - start
    n = len(results)
    counts = []
    for kind, word in (("breach", "over budget"), ("regression", "regressed against the lock"),
                       ("unmodeled", "with ops that have no cost rule"), ("approximate", "approximate"),
                       ("error", "with errors")):
        k = len({f.path for f in findings if f.kind == kind})
        if k:
            counts.append(f"{k} {word}")
    status = ", ".join(counts) if counts else "all pass"
    summary = (f"depthscope check: {n} model{'s' if n != 1 else ''}, {status} "
               f"({cached} from cache, {elapsed:.1f} s)")
    if lock_info["updated"]:
        summary += f"; wrote {lock_name}"
    elif update:
        summary += f"; {lock_name} not written because of the errors above"

    exit_code = max((f.exit_code for f in errors), default=0) or (EXIT_CHECK_FAILED if failing else 0)
    if fmt == "json":
        click.echo(render_json(results, findings, exit_code, lock_info), nl=False)
    elif fmt == "github":
        click.echo(render_github(findings, summary, {r.entry.key: r.entry.abspath for r in results}), nl=False)
    else:
        click.echo(render_text(results, findings, summary, verbose), nl=False)

    if errors:
        err = DepthscopeError(f"{len(errors)} model{'s' if len(errors) != 1 else ''} could not be checked")
        err.exit_code = exit_code
        raise err
    if failing:
        raise CheckFailed(_failure_text(failing, lock_name))


def _inside(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root + os.sep)


def _failure_text(failing: list[Finding], lock_name: str) -> str:
    """'1 budget breach and 2 models with ops that have no cost rule'."""
    def count(kind: str) -> int:
        return sum(f.kind == kind for f in failing)

    def models(n: int) -> str:
        return f"{n} model{'s' if n != 1 else ''}"

    what = []
    if count("breach"):
        what.append(f"{count('breach')} budget breach{'es' if count('breach') != 1 else ''}")
    if count("regression"):
        what.append(f"{count('regression')} regression{'s' if count('regression') != 1 else ''} against {lock_name}")
    if count("unmodeled"):
        what.append(f"{models(count('unmodeled'))} with ops that have no cost rule")
    if count("approximate"):
        what.append(f"{models(count('approximate'))} with an approximate analysis")
    return " and ".join(what)


def _analyze(result: ModelResult, cache: Cache, use_cache: bool, root: str, timeout: float, debug: bool) -> None:
    """The model's summary: from the cache when a valid entry matches, else from an analysis subprocess."""
    entry = result.entry
    key = cache.key(entry, result.engine, root)
    summary = None
    if use_cache:
        summary, why, suspicious = cache.get(key, root)
        result.miss = why
        if suspicious:
            click.echo(f"depthscope: warning: {entry.key}: {why}; re-analyzing", err=True)
    result.cached = summary is not None
    if summary is None:
        summary, inputs = analyze_isolated(entry, result.engine, root, timeout, debug)
        cache.put(key, summary, inputs)
    result.summary = summary


def _error_message(entry: CheckEntry, exc: DepthscopeError) -> str:
    msg = str(exc).replace(entry.abspath, entry.key)
    if msg.startswith(entry.key + ": "):
        msg = msg[len(entry.key) + 2:]
    if entry.engine == "symbolic" and "export" in msg:
        msg = f"symbolic = true, but {msg}"
    if not msg.startswith(entry.key + ":"):  # (keep "model.py:12: syntax error" as it is)
        msg = f"{entry.key}: {msg}"
    if isinstance(exc, AnalysisFailed) and exc.exit_code == EXIT_INTERNAL and "--debug" not in msg:
        msg += " (rerun with --debug for the traceback)"
    return msg


__all__ = ["check_command"]
