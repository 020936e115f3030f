"""`[tool.depthscope]` in pyproject.toml: the models `depthscope check` checks, and command-line defaults.

    [tool.depthscope]
    engine = "auto"                    # default engine for every command (auto, symbolic, fitted)
    lock = "depthscope.lock.json"      # baseline file, relative to pyproject.toml
    cache-dir = ".depthscope_cache"    # analysis cache, relative to pyproject.toml
    cache = true                       # false: always re-analyze
    timeout = 1800                     # seconds one model's analysis may take in `check` (--timeout overrides)
    allow-unmodeled = []               # ops without a cost rule that may pass a check ("ns::op", "aten.op")
    allow-approximate = false          # true: an approximate analysis may pass a check
    fast-memory = "48KiB"              # default of `analyze --fast-memory` (bytes; KB/MB powers of 10, KiB/MiB of 2)

    [[tool.depthscope.check]]
    path = "models/tagger.py"          # a model file, relative to pyproject.toml
    work = "b*n**2*d"                  # optional big-O budget for the work
    depth = "log(n)"                   # optional big-O budget for the parallel depth
    bytes = "b*n*d"                    # optional big-O budget for the bytes moved (unfused)
    symbolic = true                    # optional: require the symbolic engine (no fitted fallback)
    engine = "auto"                    # optional: this model's engine (symbolic = true means "symbolic")
    train = false                      # optional: check a training step (forward and backward)
    allow-unmodeled = ["mylib::scan"]  # optional: more ops allowed without a rule, for this model
    allow-approximate = true           # optional: this model's setting, over [tool.depthscope]'s

Every problem found here is an InputError (exit 2) naming the file, the entry and the key.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from depthscope.check.budget import BudgetError, parse_budget
from depthscope.complexity import Class
from depthscope.engine import ENGINES
from depthscope.errors import InputError
from depthscope.options import parse_bytes

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]

METRICS = ("work", "depth", "bytes")
# budgets on generation (analyze --generate): the prefill of n tokens, one decode step with c cached tokens, and
# T new tokens; an entry with any of them is also analyzed for generation, compared with its budgets only
GENERATE_METRICS = ("prefill_work", "prefill_depth", "prefill_bytes", "decode_work", "decode_depth", "decode_bytes",
                    "generate_work", "generate_depth", "generate_bytes")
ENTRY_KEYS = ("path", "work", "depth", "bytes", *GENERATE_METRICS, "symbolic", "engine", "train", "allow-unmodeled",
              "allow-approximate")
DEFAULTS = {"engine": "auto", "lock": "depthscope.lock.json", "cache-dir": ".depthscope_cache", "cache": True,
            "timeout": 1800.0, "allow-unmodeled": (), "allow-approximate": False, "fast-memory": None}
_OP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:::|\.)([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?", re.ASCII)


def op_pattern(text) -> str:
    """"mylib::scan", "mylib.scan" or "aten.gelu" -> "mylib.scan"; with an overload ("aten.add.Tensor") as given.

    ValueError for anything else."""
    m = _OP.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not an op name: write \"namespace::op\" or \"aten.op\" (optionally with "
                         "the overload, \"aten.add.Tensor\")")
    return ".".join(g for g in m.groups() if g)


def op_allowed(op: str, patterns) -> bool:
    """Whether an op as depthscope names it ("mylib.scan.default") matches one of the `op_pattern` results."""
    parts = op.split(".")
    base = ".".join(parts[:2])
    return any(p == op or p == base for p in patterns)


@dataclass
class CheckEntry:
    """One model to check: its path (as written, relative to the project root) and its budgets."""

    path: str
    abspath: str
    budgets: dict[str, Class] = field(default_factory=dict)  # metric -> class
    budget_text: dict[str, str] = field(default_factory=dict)
    engine: str | None = None  # None: the command line's --engine, else [tool.depthscope] engine
    train: bool = False
    configured: bool = True  # False: named on the command line only (checked against the lock)
    allow_unmodeled: tuple[str, ...] = ()  # op patterns (op_pattern) that may stay without a rule
    allow_approximate: bool = False

    @property
    def generate(self) -> bool:
        """Whether the entry has a generation budget (so its analysis includes generation)."""
        return any(m in self.budgets for m in GENERATE_METRICS)

    @property
    def key(self) -> str:
        """The model's name in the lock file and in messages: its path relative to the root, with '/'."""
        return self.path


@dataclass
class Config:
    root: str  # the directory holding pyproject.toml (or the current directory without one)
    pyproject: str | None
    entries: list[CheckEntry]
    settings: dict  # [tool.depthscope] values for engine, lock, cache-dir, cache, timeout, allow-* (defaults in)

    def resolve(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.root, path))

    def display_path(self, abspath: str) -> str:
        """abspath relative to the root when inside it (with '/'), else as given."""
        rel = os.path.relpath(abspath, self.root)
        if rel.startswith(os.pardir + os.sep) or rel == os.pardir or os.path.isabs(rel):
            return abspath
        return rel.replace(os.sep, "/")


def find_pyproject(start: str | None = None) -> str | None:
    """The nearest pyproject.toml in `start` (default: the current directory) or above it."""
    d = os.path.abspath(start or os.getcwd())
    while True:
        candidate = os.path.join(d, "pyproject.toml")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def read_tool_section(pyproject: str) -> dict:
    """The [tool.depthscope] table of a pyproject.toml ({} when absent); InputError for an unreadable file."""
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise InputError("reading pyproject.toml needs Python 3.11 or the tomli package (pip install tomli)")
    try:
        with open(pyproject, "rb") as f:
            raw = f.read(MAX_PYPROJECT + 1)
        if len(raw) > MAX_PYPROJECT:
            raise InputError(f"{pyproject}: larger than {MAX_PYPROJECT >> 20} MiB")
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise InputError(f"{pyproject}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{pyproject}: not valid UTF-8 (byte {exc.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{pyproject}: invalid TOML: {exc}") from exc
    except RecursionError:
        raise InputError(f"{pyproject}: invalid TOML: nested too deeply") from None
    tool = data.get("tool", {})
    section = tool.get("depthscope", {}) if isinstance(tool, dict) else {}
    if not isinstance(section, dict):
        raise InputError(f"{pyproject}: [tool.depthscope] must be a table")
    return section


def load_config(pyproject: str | None = None, start: str | None = None) -> Config:
    """Read [tool.depthscope] from `pyproject` (default: the nearest pyproject.toml); validate every entry."""
    if pyproject is not None:
        if not os.path.isfile(pyproject):
            raise InputError(f"{pyproject}: no such file")
        pyproject = os.path.abspath(pyproject)
    else:
        pyproject = find_pyproject(start)
    if pyproject is None:
        return Config(os.path.abspath(start or os.getcwd()), None, [], dict(DEFAULTS))
    root = os.path.dirname(pyproject)
    name = os.path.relpath(pyproject)
    section = read_tool_section(pyproject)
    settings = _settings(section, name)
    config = Config(root, pyproject, [], settings)
    lock_dir = os.path.realpath(os.path.dirname(config.resolve(settings["lock"])))
    real_root = os.path.realpath(root)
    if lock_dir != real_root and not lock_dir.startswith(real_root + os.sep):
        # `check --update` replaces the lock: a pyproject.toml (a pull request) must not aim that outside the project
        raise InputError(f"{name}: [tool.depthscope] lock = {settings['lock']!r} is outside the project "
                         f"({root}); keep the lock in the project, or pass --lock on the command line")

    raw = section.get("check", [])
    if isinstance(raw, dict):
        raise InputError(f"{name}: [tool.depthscope.check] must be an array of tables: write "
                         "[[tool.depthscope.check]] (double brackets), one per model")
    if not isinstance(raw, list):
        raise InputError(f"{name}: tool.depthscope.check must be an array of tables ([[tool.depthscope.check]])")
    seen: dict[str, int] = {}
    for i, item in enumerate(raw, 1):
        entry = _entry(item, i, name, config)
        if entry.abspath in seen:
            raise InputError(f"{name}: [[tool.depthscope.check]] #{i}: {entry.path} is already checked by entry "
                             f"#{seen[entry.abspath]}; give each model one entry")
        seen[entry.abspath] = i
        config.entries.append(entry)
    return config


MAX_PYPROJECT = 16 << 20


def _settings(section: dict, name: str) -> dict:
    settings = dict(DEFAULTS)
    for key in DEFAULTS:
        for spelling in (key, key.replace("-", "_")):
            if spelling in section:
                settings[key] = section[spelling]
    if settings["engine"] not in ENGINES:
        raise InputError(f"{name}: [tool.depthscope] engine = {settings['engine']!r}: "
                         f"choose one of {', '.join(ENGINES)}")
    for key in ("lock", "cache-dir"):
        if not isinstance(settings[key], str) or not settings[key].strip():
            raise InputError(f"{name}: [tool.depthscope] {key} must be a non-empty string (a path)")
    if not isinstance(settings["cache"], bool):
        raise InputError(f"{name}: [tool.depthscope] cache must be true or false")
    settings["timeout"] = timeout_seconds(settings["timeout"], f"{name}: [tool.depthscope] timeout")
    settings["allow-unmodeled"] = _op_list(settings["allow-unmodeled"], f"{name}: [tool.depthscope] allow-unmodeled")
    if not isinstance(settings["allow-approximate"], bool):
        raise InputError(f"{name}: [tool.depthscope] allow-approximate must be true or false")
    if settings["fast-memory"] is not None:
        try:
            settings["fast-memory"] = parse_bytes(settings["fast-memory"])
        except ValueError as exc:
            raise InputError(f"{name}: [tool.depthscope] fast-memory: {exc}") from None
    return settings


def timeout_seconds(value, where: str) -> float:
    """A positive, finite number of seconds; InputError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{where} must be a positive number of seconds, got {value!r}")
    return float(value)


def _op_list(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise InputError(f"{where} must be a list of op names, such as [\"mylib::scan\", \"aten.gelu\"]")
    out = []
    for item in value:
        try:
            out.append(op_pattern(item))
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
    return tuple(out)


def _entry(item, i: int, name: str, config: Config) -> CheckEntry:
    where = f"{name}: [[tool.depthscope.check]] #{i}"
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected a table with path = \"...\"")
    unknown = sorted(set(item) - set(ENTRY_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"the keys are {', '.join(ENTRY_KEYS)}")
    path = item.get("path")
    if not isinstance(path, str) or not path.strip():
        raise InputError(f"{where}: path = \"...\" (the model file, relative to {name}) is required")
    where = f"{where} ({path})"
    abspath = config.resolve(path)
    if not os.path.isfile(abspath):
        raise InputError(f"{where}: no such model file {abspath}")

    budgets, texts = {}, {}
    for metric in METRICS + GENERATE_METRICS:
        if metric not in item:
            continue
        text = item[metric]
        if not isinstance(text, str):
            raise InputError(f"{where}: {metric} must be a string such as \"n*log(n)\", got {text!r}")
        try:
            budgets[metric] = parse_budget(text)
        except BudgetError as exc:
            raise BudgetError(f"{where}: {metric}: {exc}") from None
        texts[metric] = text

    engine = item.get("engine")
    if engine is not None and engine not in ENGINES:
        raise InputError(f"{where}: engine = {engine!r}: choose one of {', '.join(ENGINES)}")
    symbolic = item.get("symbolic")
    if symbolic is not None:
        if not isinstance(symbolic, bool):
            raise InputError(f"{where}: symbolic must be true or false")
        if symbolic:
            if engine not in (None, "symbolic"):
                raise InputError(f"{where}: symbolic = true contradicts engine = {engine!r}")
            engine = "symbolic"
        elif engine == "symbolic":
            raise InputError(f"{where}: symbolic = false contradicts engine = \"symbolic\"")
    train = item.get("train", False)
    if not isinstance(train, bool):
        raise InputError(f"{where}: train must be true or false")
    allowed = config.settings["allow-unmodeled"] + _op_list(item.get("allow-unmodeled", []), f"{where}: allow-unmodeled")
    approximate = item.get("allow-approximate", config.settings["allow-approximate"])
    if not isinstance(approximate, bool):
        raise InputError(f"{where}: allow-approximate must be true or false")
    if train and any(m in budgets for m in GENERATE_METRICS):
        raise InputError(f"{where}: generation budgets analyze inference; they do not combine with train = true")
    return CheckEntry(config.display_path(abspath), abspath, budgets, texts, engine, train,
                      allow_unmodeled=allowed, allow_approximate=approximate)


def cli_defaults(config: Config) -> dict:
    """A click default_map from [tool.depthscope]: the engine for every command, the settings for `check`.

    Paths stay relative to the pyproject.toml's directory: `check` resolves them against it."""
    s = config.settings
    return {
        "analyze": {"engine": s["engine"], **({"fast_memory": s["fast-memory"]} if s["fast-memory"] else {})},
        "predict": {"engine": s["engine"]},
        "validate": {"engine": s["engine"]},
        "check": {"engine": s["engine"], "lock": s["lock"], "cache_dir": s["cache-dir"], "no_cache": not s["cache"]},
    }


__all__ = ["CheckEntry", "Config", "DEFAULTS", "ENGINES", "GENERATE_METRICS", "METRICS", "cli_defaults", "find_pyproject", "load_config",
           "op_allowed", "op_pattern", "read_tool_section", "timeout_seconds"]
