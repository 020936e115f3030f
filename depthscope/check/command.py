"""`depthscope check`: complexity budgets from pyproject.toml, a baseline lock file, and an analysis cache.

For every `[[tool.depthscope.check]]` entry (or model path on the command line) the model's big-O work and
depth are compared term by term with its budgets (see depthscope/budget.py); a metric without a budget is
compared with the class recorded in depthscope.lock.json (`depthscope check --update` writes it). Exit codes:
0 pass, 1 a budget exceeded or a class grew against the lock, 2 a configuration or usage error (including a
model that cannot be analyzed), 101 an internal error.

Analyses are cached in .depthscope_cache/ under a key made of the model file's content, the content of every
file it imports from inside the project, the Python, torch, sympy and depthscope versions, and depthscope's own
analysis source (editable installs). A check of unchanged models neither re-analyzes them nor imports torch.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

import click

from depthscope.check.budget import BudgetError, Class, Term
from depthscope.config import ENGINES, METRICS, CheckEntry, Config, load_config
from depthscope.errors import EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_USAGE, CheckFailed, DepthscopeError, InputError

CACHE_FORMAT = 1
LOCK_FORMAT = 1
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_SIZE = 1024  # sizes at which the critical path's pieces and the ops are ranked
MAX_GROUPS = 24


# ---------------------------------------------------------------------------------------------
# Analysis summaries: what the check needs from a Report, as JSON (the cache stores exactly this)


def op_display(op: str) -> str:
    """aten.linear.default -> aten.linear: the overload does not help a reader."""
    parts = op.split(".")
    return ".".join(parts[:-1]) if len(parts) >= 3 else op


def summarize(report, fallback: str | None = None) -> dict:
    """The parts of a Report that `check` uses: classes, exact formulas, critical-path groups, heaviest ops."""
    from depthscope.check.budget import class_of_expr
    from depthscope.symbols import as_expr, evaluate

    ref = {}
    for info in report.symbols.values():
        size = REFERENCE_SIZE if info.max is None else min(REFERENCE_SIZE, info.max)
        ref[info.symbol] = max(size, info.min)

    def value(expr) -> float:
        try:
            return float(evaluate(as_expr(expr), ref))
        except (TypeError, ValueError, AttributeError):
            return 0.0

    sizes = {name: int(ref[info.symbol]) for name, info in report.symbols.items()}
    groups: dict[tuple[str, str], object] = {}
    for step in report.critical_path(sizes).steps:
        key = (step.module, op_display(step.op))
        groups[key] = groups.get(key, 0) + as_expr(step.depth)
    depth_groups = [{"module": m, "op": op, "class": class_of_expr(d).to_json(), "ref": value(d)}
                    for (m, op), d in groups.items()]
    depth_groups.sort(key=lambda g: (-g["ref"], g["module"], g["op"]))

    work_ops = []
    for o in sorted(report.ops(sizes), key=lambda o: (-value(o.work), o.op))[:8]:
        per_module: dict[str, object] = {}
        for node in report.nodes:
            if node.op == o.op:
                per_module[node.module] = per_module.get(node.module, 0) + as_expr(node.cost.work)
        module = max(sorted(per_module), key=lambda m: value(per_module[m])) if per_module else ""
        work_ops.append({"op": op_display(o.op), "module": module, "class": class_of_expr(o.work).to_json(),
                         "ref": value(o.work)})

    out = {"format": CACHE_FORMAT, "model": report.model, "engine": report.engine, "mode": report.mode,
           "symbols": sorted(report.symbols), "fallback": fallback,
           "unmodeled": [[op, count] for op, count in report.unmodeled],
           "depth_groups": depth_groups[:MAX_GROUPS], "work_ops": work_ops}
    for metric in METRICS:
        expr = getattr(report, metric)
        cls = class_of_expr(expr)
        out[metric] = {"class": cls.text(), "terms": cls.to_json(), "formula": str(expr)}
    return out


def analyze_entry(entry: CheckEntry, engine: str) -> dict:
    """Analyze one model (stdout goes to stderr so --format json stays clean) and summarize it."""
    from depthscope.pipeline import analyze_file

    reasons: list[str] = []
    with contextlib.redirect_stdout(sys.stderr):
        report = analyze_file(entry.abspath, train=entry.train, engine=engine, on_fallback=reasons.append)
    return summarize(report, reasons[0] if reasons else None)


# ---------------------------------------------------------------------------------------------
# Cache


@functools.lru_cache(maxsize=None)
def environment_fingerprint() -> str:
    """Python, torch, sympy and depthscope versions, and a digest of the depthscope source an analysis runs.

    The source is that of depthscope.api and this module and everything they import within the package (found
    statically, as for model files), so editing depthscope in an editable install invalidates the analyses,
    while editing an unrelated command does not.
    """
    from importlib import metadata

    from depthscope import __version__

    versions = []
    for dist in ("torch", "sympy"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} none")
    h = hashlib.sha256()
    top = os.path.dirname(_PACKAGE)  # imports are absolute (depthscope.engine...): resolve them from above the package
    sources = {p for p in import_closure(os.path.join(_PACKAGE, "pipeline.py"), top) if p.startswith(_PACKAGE)}
    sources |= {p for p in import_closure(os.path.abspath(__file__), top) if p.startswith(_PACKAGE)}
    for path in sorted(sources):
        h.update(os.path.relpath(path, _PACKAGE).encode() + b"\0")
        try:
            with open(path, "rb") as f:
                h.update(f.read())
        except OSError:
            h.update(b"unreadable")
        h.update(b"\0")
    return (f"python {sys.version_info[0]}.{sys.version_info[1]}; {'; '.join(versions)}; "
            f"depthscope {__version__} {h.hexdigest()}")


def _module_files(name: str, bases: list[str]) -> list[str]:
    """Files that `import name` could load from one of `bases`: the module and its packages' __init__.py."""
    parts = [p for p in name.split(".") if p]
    found = []
    for base in bases:
        d = base
        hits = []
        for i, part in enumerate(parts):
            init = os.path.join(d, part, "__init__.py")
            last = i == len(parts) - 1
            if os.path.isfile(init):
                hits.append(init)
                d = os.path.join(d, part)
            elif last and os.path.isfile(os.path.join(d, part + ".py")):
                hits.append(os.path.join(d, part + ".py"))
            else:
                break
        if hits:
            found += hits
            break  # the first base that provides the module wins, as on sys.path
    return found


_IMPORT_LINE = re.compile(r"^[ \t]*(?:import|from)[ \t]", re.M)
_COMMENT = re.compile(r"#.*$")


def import_statements(source: str) -> list:
    """The import statements of a module, at any nesting, as ast nodes.

    Only the lines that start an import are parsed (with their continuation lines), which is several times
    faster than parsing whole files. A line inside a string that looks like an import can only add a file to
    the cache key, never drop one.
    """
    out = []
    lines = source.splitlines()
    starts = {source.count("\n", 0, m.start()) for m in _IMPORT_LINE.finditer(source)}
    for i in sorted(starts):
        text = _COMMENT.sub("", lines[i]).strip()
        j = i
        while j + 1 < len(lines) and (text.endswith("\\") or text.count("(") > text.count(")")) and j - i < 500:
            j += 1
            text = text.rstrip("\\") + " " + _COMMENT.sub("", lines[j]).strip()
        for candidate in (text, text.split(";")[0]):
            try:
                tree = ast.parse(candidate)
            except (SyntaxError, ValueError):
                continue
            out += [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
            break
    return out


def import_closure(path: str, root: str) -> list[str]:
    """`path` and every file inside `root` it imports, directly or through other such files (sorted)."""
    root = os.path.realpath(root)

    def inside(p: str) -> bool:
        p = os.path.realpath(p)
        return p == root or p.startswith(root + os.sep)

    start = os.path.realpath(path)
    seen: set[str] = set()
    stack = [start]
    bases = [os.path.dirname(start), root, os.path.join(root, "src")]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(current, encoding="utf-8", errors="replace") as f:
                statements = import_statements(f.read())
        except OSError:
            continue  # still hashed by content; the analysis reports the problem
        here = os.path.dirname(current)
        for node in statements:
            names: list[tuple[str, list[str]]] = []
            if isinstance(node, ast.Import):
                names = [(alias.name, bases) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here
                    for _ in range(node.level - 1):
                        base = os.path.dirname(base)
                    search = [base]
                else:
                    search = bases
                module = node.module or ""
                names = [(module, search)] if module else []
                names += [(f"{module}.{alias.name}" if module else alias.name, search)
                          for alias in node.names if alias.name != "*"]
            for name, search in names:
                for f in _module_files(name, search):
                    real = os.path.realpath(f)
                    if inside(real) and real not in seen:
                        stack.append(real)
    return sorted(seen)


class Cache:
    """JSON summaries in a directory (with a .gitignore of its own), keyed by content and versions."""

    def __init__(self, directory: str, enabled: bool = True):
        self.directory = directory
        self.enabled = enabled

    def key(self, entry: CheckEntry, engine: str, root: str) -> str:
        h = hashlib.sha256()
        h.update(f"depthscope check cache {CACHE_FORMAT}\n{environment_fingerprint()}\n".encode())
        h.update(f"engine={engine} train={entry.train}\n".encode())
        for path in import_closure(entry.abspath, root):
            try:
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                digest = "unreadable"
            model = path == os.path.realpath(entry.abspath)
            rel = "<model>" if model else os.path.relpath(path, os.path.realpath(root))
            h.update(f"{rel} {digest}\n".encode())
        return h.hexdigest()

    def _file(self, key: str) -> str:
        return os.path.join(self.directory, key[:40] + ".json")

    def get(self, key: str) -> dict | None:
        if not self.enabled:
            return None
        try:
            with open(self._file(key), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or data.get("key") != key:
            return None
        return data.get("summary") if isinstance(data.get("summary"), dict) else None

    def put(self, key: str, summary: dict) -> None:
        if not self.enabled:
            return
        try:
            if not os.path.isdir(self.directory):
                os.makedirs(self.directory, exist_ok=True)
                with open(os.path.join(self.directory, ".gitignore"), "w") as f:
                    f.write("# depthscope's analysis cache: safe to delete, never to commit\n*\n")
            _write_atomic(self._file(key), json.dumps({"format": CACHE_FORMAT, "key": key, "summary": summary}))
        except OSError as exc:  # a read-only checkout still checks, just without caching
            click.echo(f"depthscope: warning: cannot write the cache in {self.directory}: {exc.strerror or exc}",
                       err=True)


def _write_atomic(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# Lock file


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
    _write_atomic(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# Comparing a summary with budgets and the lock


@dataclass
class Finding:
    path: str
    kind: str  # "breach", "regression", "error", "info"
    message: str
    metric: str | None = None
    found: str | None = None
    limit: str | None = None
    source: str | None = None  # "budget" or "lock"
    cause: str | None = None
    exit_code: int = 0

    @property
    def failing(self) -> bool:
        return self.kind in ("breach", "regression")

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "exit_code" or self.kind == "error"}


@dataclass
class ModelResult:
    entry: CheckEntry
    engine: str
    summary: dict | None = None
    cached: bool = False
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def _where(summary: dict, module: str) -> str:
    return module or summary.get("model") or "the model"


def explain(metric: str, summary: dict, limit: Class, excess: list[Term], source: str) -> str:
    """The ops behind a breach: the critical path's heaviest pieces (depth) or the heaviest op (work)."""
    parts = []
    if metric == "depth":
        groups = summary.get("depth_groups") or []
        over = [g for g in groups if Class.from_json(g["class"]).excess(limit)]
        chosen = over[:3] if over else groups[:1]
        if chosen:
            parts.append("critical path through " + ", ".join(f"{_where(summary, g['module'])} ({g['op']})"
                                                               for g in chosen))
    else:
        ops = summary.get("work_ops") or []
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


def evaluate(result: ModelResult, locked: dict | None, lock_name: str, update: bool) -> None:
    entry, summary = result.entry, result.summary
    path = entry.key
    for metric in METRICS:
        found = Class.from_json(summary[metric]["terms"])
        status = {"class": found.text(), "formula": summary[metric]["formula"]}
        lock = None if locked is None else locked.get(metric)
        if lock is not None:
            status["locked"] = lock["parsed"].text()
        budget = entry.budgets.get(metric)
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
            path, "error", f"{path}: nothing to check against: give it a work or depth budget in "
            f"[[tool.depthscope.check]], or record a baseline with depthscope check --update", exit_code=EXIT_USAGE))


# ---------------------------------------------------------------------------------------------
# Output


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def render_text(results: list[ModelResult], findings: list[Finding], summary: str, verbose: bool) -> str:
    lines = []
    for r in results:
        if verbose and r.summary is not None:
            parts = []
            for metric, s in r.metrics.items():
                limit = s.get("budget") or s.get("locked")
                kind = "budget" if "budget" in s else "lock"
                parts.append(f"{metric} O({s['class']})" + (f" ({kind} O({limit}))" if limit else ""))
            src = "cache" if r.cached else f"{r.seconds:.1f} s"
            lines.append(f"{r.entry.key}: {r.summary.get('engine', r.engine)} engine, {', '.join(parts)} [{src}]")
    for f in findings:
        lines.append(("note: " if f.kind == "info" else "") + f.message)
    lines.append(summary)
    return "\n".join(lines) + "\n"


def _workspace_path(path: str, abspath: str | None) -> str:
    """The file as GitHub names it: relative to $GITHUB_WORKSPACE (the checkout) when the file is inside it."""
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace and abspath:
        rel = os.path.relpath(abspath, workspace)
        if not rel.startswith(os.pardir):
            return rel.replace(os.sep, "/")
    return path


def render_github(findings: list[Finding], summary: str, files: dict[str, str] | None = None) -> str:
    lines = []
    files = files or {}
    for f in findings:
        level = {"info": "notice"}.get(f.kind, "error")
        title = {"breach": "complexity budget exceeded", "regression": "complexity regression",
                 "error": "depthscope check error", "info": "depthscope check"}[f.kind]
        file = _workspace_path(f.path, files.get(f.path))
        lines.append(f"::{level} file={_gh_property(file)},title={_gh_property(title)}::{_gh_data(f.message)}")
    lines.append(summary)
    return "\n".join(lines) + "\n"


def render_json(results: list[ModelResult], findings: list[Finding], exit_code: int, lock: dict) -> str:
    models = []
    for r in results:
        s = r.summary or {}
        models.append({
            "path": r.entry.key, "engine": s.get("engine", r.engine), "cached": r.cached,
            "seconds": round(r.seconds, 3), "fallback": s.get("fallback"), "unmodeled": s.get("unmodeled", []),
            **{m: r.metrics.get(m) for m in METRICS},
        })
    out = {"ok": exit_code == 0, "exit_code": exit_code, "models": models,
           "findings": [f.to_dict() for f in findings], "lock": lock}
    return json.dumps(out, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# The command


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
@click.option("-v", "--verbose", is_flag=True, help="One line per model, and why a fallback happened.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def check_command(paths, config_path, update, lock, fmt, engine, no_cache, cache_dir, verbose, debug):
    """Check models against the complexity budgets in pyproject.toml ([[tool.depthscope.check]]) or the lock.

    Exit 0 when every model is within its budgets and no class grew against depthscope.lock.json, 1 when one
    is over, 2 for configuration or usage errors.
    """
    start = time.perf_counter()
    config = load_config(config_path)
    settings = config.settings
    engine_default = engine or settings["engine"]
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
            key = cache.key(entry, eng, config.root)
            summary = cache.get(key) if use_cache else None
            result.cached = summary is not None
            if summary is None:
                summary = analyze_entry(entry, eng)
                cache.put(key, summary)
            result.summary = summary
        except DepthscopeError as exc:
            if debug:
                traceback.print_exc()
            msg = str(exc).replace(entry.abspath, entry.key)
            if msg.startswith(entry.key + ": "):
                msg = msg[len(entry.key) + 2:]
            if entry.engine == "symbolic" and "export" in msg:
                msg = f"symbolic = true, but {msg}"
            if not msg.startswith(entry.key + ":"):  # (keep "model.py:12: syntax error" as it is)
                msg = f"{entry.key}: {msg}"
            result.findings.append(Finding(entry.key, "error", msg, exit_code=exc.exit_code))
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
            except BudgetError as exc:  # a corrupt cache entry would be caught here; keep it a usage error
                result.findings.append(Finding(entry.key, "error", f"{entry.key}: {exc}", exit_code=EXIT_USAGE))

    findings = [f for r in results for f in r.findings]
    errors = [f for f in findings if f.kind == "error"]
    failing = [f for f in findings if f.failing]

    lock_info = {"path": lock_name, "updated": False}
    if update:
        if errors:
            lock_info["skipped"] = "errors"
        else:
            models = dict(lock_models) if paths else {}
            for r in results:
                models[r.entry.key] = lock_entry(r.summary)
            write_lock(lock_path, models)
            lock_info["updated"] = True

    cached = sum(r.cached for r in results)
    elapsed = time.perf_counter() - start
    n = len(results)
    counts = []
    for kind, word in (("breach", "over budget"), ("regression", "regressed against the lock"),
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
        breaches = sum(f.kind == "breach" for f in failing)
        regressions = len(failing) - breaches
        what = [f"{breaches} budget breach{'es' if breaches != 1 else ''}"] if breaches else []
        if regressions:
            what.append(f"{regressions} regression{'s' if regressions != 1 else ''} against {lock_name}")
        raise CheckFailed(" and ".join(what))


__all__ = ["Cache", "check_command", "import_closure", "read_lock", "summarize", "write_lock"]
