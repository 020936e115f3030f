"""The analysis cache of `depthscope check`: signed summaries in .depthscope_cache/, keyed by content and versions.

The key is made of the model file's path and content, the content of every file it imports from inside the
project, the Python, torch, sympy and depthscope versions, depthscope's own analysis source (editable
installs), the TORCH*/PYTORCH* environment variables, the engine and `train`. Each entry also records what the
analysis read besides its imports (check/record.py), re-checked before it is reused, and is signed with a key
outside the repository (check/signing.py). A check of unchanged models neither re-analyzes them nor imports
torch.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import re
import sys

import click

from depthscope.check.files import read_regular, write_atomic
from depthscope.check.record import changed_input
from depthscope.check.signing import KeyUnavailable, key_path, sign, signing_key, verify
from depthscope.check.summary import CACHE_FORMAT
from depthscope.check.validate import validate_inputs, validate_summary
from depthscope.config import CheckEntry

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the depthscope package directory
MAX_ENTRY = 16 << 20  # bytes of one cache entry
TORCH_ENV = ("TORCH", "PYTORCH")  # prefixes of environment variables in every key


@functools.lru_cache(maxsize=None)
def environment_fingerprint() -> str:
    """Python, torch, sympy and depthscope versions, and a digest of the depthscope source an analysis runs.

    The source is that of depthscope.pipeline and the check command and everything they import within the
    package (found statically, as for model files), so editing depthscope in an editable install invalidates the
    analyses, while editing an unrelated command does not.
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
    top = os.path.dirname(PACKAGE)  # imports are absolute (depthscope.engine...): resolve them from above the package
    sources: set[str] = set()
    for start in (os.path.join(PACKAGE, "pipeline.py"), os.path.join(PACKAGE, "check", "command.py")):
        sources |= {p for p in import_closure(start, top) if p.startswith(PACKAGE)}
    for path in sorted(sources):
        h.update(os.path.relpath(path, PACKAGE).encode() + b"\0")
        try:
            with open(path, "rb") as f:
                h.update(f.read())
        except OSError:
            h.update(b"unreadable")
        h.update(b"\0")
    return (f"python {sys.version_info[0]}.{sys.version_info[1]}; {'; '.join(versions)}; "
            f"depthscope {__version__} {h.hexdigest()}")


def module_files(name: str, bases: list[str]) -> list[str]:
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
                for f in module_files(name, search):
                    real = os.path.realpath(f)
                    if inside(real) and real not in seen:
                        stack.append(real)
    return sorted(seen)


class Cache:
    """Signed JSON summaries in a directory (with a .gitignore of its own), keyed by content and versions.

    An entry holds the summary, what the analysis read besides its imports (check/record.py: each file's digest,
    each environment variable's value) and an HMAC of all of it under the key outside the repository
    (check/signing.py). `get` returns a summary only when the entry is well formed, signed by this key, made
    for this key of content and versions, and every recorded input is unchanged; otherwise `miss` says why.
    """

    def __init__(self, directory: str, enabled: bool = True):
        self.directory = directory
        self.enabled = enabled
        self._key: bytes | None = None
        self.unavailable: str | None = None  # why entries can be neither signed nor verified
        self.signing_key_file: str | None = None  # where the key was looked for, once it was

    def key(self, entry: CheckEntry, engine: str, root: str) -> str:
        h = hashlib.sha256()
        h.update(f"depthscope check cache {CACHE_FORMAT}\n{environment_fingerprint()}\n".encode())
        h.update(f"engine={engine} train={entry.train}\n".encode())
        if entry.generate:  # (only then: the keys of entries without generation budgets stay as they were)
            h.update(b"generate=1\n")
        for name in sorted(os.environ):  # torch reads its configuration from TORCH*/PYTORCH* variables
            if name.startswith(TORCH_ENV):
                h.update(f"${name}={os.environ[name]}\n".encode("utf-8", "surrogateescape"))
        model = os.path.realpath(entry.abspath)
        h.update(f"model={entry.key}\n".encode("utf-8", "surrogateescape"))
        for path in import_closure(entry.abspath, root):
            try:
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            except OSError:
                digest = "unreadable"
            rel = "<model>" if path == model else os.path.relpath(path, os.path.realpath(root))
            h.update(f"{rel} {digest}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def _file(self, key: str) -> str:
        return os.path.join(self.directory, key[:40] + ".json")

    def _signing_key(self) -> bytes | None:
        if self._key is None and self.unavailable is None:
            self.signing_key_file = key_path()
            try:
                self._key = signing_key(self.signing_key_file)
            except KeyUnavailable as exc:
                self.unavailable = str(exc)
        return self._key

    def get(self, key: str, root: str) -> tuple[dict | None, str | None, bool]:
        """(summary, None, False) for a valid entry, else (None, why, suspicious): `why` is None for a plain miss,
        says which input changed for a stale entry, and what is wrong (suspicious) for an entry not to be trusted."""
        if not self.enabled:
            return None, None, False
        try:
            data = json.loads(read_regular(self._file(key), MAX_ENTRY))
        except (FileNotFoundError, NotADirectoryError):
            return None, None, False
        except (OSError, ValueError, RecursionError) as exc:  # (UnicodeDecodeError is a ValueError)
            return None, f"unreadable cache entry ({str(exc)[:200]})", True
        mac = data.pop("mac", None) if isinstance(data, dict) else None
        if not isinstance(data, dict) or set(data) != {"format", "key", "summary", "inputs"}:
            return None, "malformed cache entry", True
        if data["format"] != CACHE_FORMAT:
            return None, "cache entry of another depthscope version", False
        signing = self._signing_key()
        if signing is None:
            return None, None, False
        if not verify(signing, data, mac):
            return None, "cache entry not signed with this machine's key (edited, copied, or made with another key)", True
        if data["key"] != key:
            return None, "cache entry made for other content", True
        try:
            summary = validate_summary(data["summary"], CACHE_FORMAT)
            inputs = validate_inputs(data["inputs"])
        except ValueError as exc:
            return None, f"malformed cache entry ({str(exc)[:200]})", True
        changed = changed_input(inputs, root)
        if changed:
            return None, changed, False
        return summary, None, False

    def put(self, key: str, summary: dict, inputs: dict | None) -> None:
        """Store a summary with the inputs its analysis read (None: not cacheable, e.g. too many files read)."""
        if not self.enabled or inputs is None:
            return
        signing = self._signing_key()
        if signing is None:
            return
        data = {"format": CACHE_FORMAT, "key": key, "summary": summary, "inputs": inputs}
        data["mac"] = sign(signing, data)
        try:
            if not os.path.isdir(self.directory):
                os.makedirs(self.directory, exist_ok=True)
                with open(os.path.join(self.directory, ".gitignore"), "w") as f:
                    f.write("# depthscope's analysis cache: safe to delete, never to commit\n*\n")
            write_atomic(self._file(key), json.dumps(data))
        except OSError as exc:  # a read-only checkout still checks, just without caching
            click.echo(f"depthscope: warning: cannot write the cache in {self.directory}: {exc.strerror or exc}",
                       err=True)


__all__ = ["Cache", "MAX_ENTRY", "PACKAGE", "environment_fingerprint", "import_closure", "import_statements",
           "module_files"]
