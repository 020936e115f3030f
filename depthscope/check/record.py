"""What a model reads while it is imported and captured: files (through audit "open" events) and environment variables.

`depthscope check` keys its cache on the model file and the project files it imports; a model can also choose
its architecture from a JSON or YAML file, a checkpoint's config or an environment variable. The analysis
subprocess records all of them with `Recorder`, and the cache entry stores each file's digest and each variable's
value, re-checked before the entry is reused.

- Files: every file opened for reading (`open`, `io.open`, `os.open`, `pathlib`, `json.load(open(...))`,
  libraries such as transformers' `from_pretrained`), by whoever opens it, except files inside the Python
  installation, site-packages and depthscope itself (their versions are in the cache key's environment
  fingerprint) and the kernel's /proc, /sys and /dev. A compiled `__pycache__/*.pyc` stands for its source
  file. A file that does not exist when it is opened is recorded as absent, so creating it re-analyzes. Each
  file's digest is taken when it is first opened, so an edit during a long analysis is not mistaken for what
  the analysis read.
- Directories listed (`os.listdir`, `os.scandir`, `glob`, `Path.iterdir`) and paths whose existence or kind is
  asked (`os.stat`, `os.path.exists`, `isfile`, `Path.is_file`...), with the same exclusions; the listings
  that `import` makes to find modules are not the model's. A stat'ed file counts by its content.
- Environment variables: every read through `os.environ` (`os.environ[...]`, `.get`, `in`, `os.getenv`,
  `os.path.expanduser`) made by code outside the Python installation, site-packages and depthscope: the model
  file, the project's modules, editable installs. A variable the model sets before it reads it is not an input.
- The current directory, when any of those paths was relative.

Not recorded: reads by C or C++ code (getenv in a torch kernel, a Rust or C library opening files), by
subprocesses, file times. Nothing imported here touches torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import site
import stat
import sys
import sysconfig

ACCESS = os.O_ACCMODE if hasattr(os, "O_ACCMODE") else 3
SYSTEM_DIRS = ("/proc", "/sys", "/dev")
MAX_FILES = 20_000  # more than this, and the analysis is not cached
SKIPPED_FRAMES = ("os.py", "_collections_abc.py", "posixpath.py", "genericpath.py", "ntpath.py", "pathlib.py",
                  "glob.py", "<frozen os>", "<frozen _collections_abc>", "<frozen posixpath>",
                  "<frozen genericpath>", "<frozen ntpath>")  # library frames between a caller and the read
IMPORT_FRAMES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>", "<frozen zipimport>")
PRIVATE_ENV = ("DEPTHSCOPE_CACHE_KEY_FILE",)  # depthscope's own settings: never an input of a model


def digest_of(path: str) -> str | None:
    """sha256 of a regular file's content ("sha256:..."), "dir" or "special" for other kinds, None when absent.

    Never opens anything but a regular file, so a FIFO cannot block."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if not stat.S_ISREG(st.st_mode):
        return "special"
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                h.update(chunk)
        finally:
            os.close(fd)
    except OSError:
        return "unreadable"
    return "sha256:" + h.hexdigest()


def listing_of(path: str) -> str | None:
    """sha256 of a directory's sorted entry names ("names:..."), None when it cannot be listed."""
    try:
        names = sorted(os.listdir(path))
    except (OSError, ValueError):
        return None
    return "names:" + hashlib.sha256("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest()


def excluded_roots(package: str) -> tuple[str, ...]:
    """Directories whose files are covered by the environment fingerprint rather than recorded one by one."""
    roots = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib", "include", "platinclude"):
        if paths.get(key):
            roots.add(paths[key])
    try:
        roots.update(site.getsitepackages())
    except AttributeError:  # pragma: no cover - old virtualenv's site module
        pass
    user = getattr(site, "getusersitepackages", lambda: None)()
    if user:
        roots.add(user)
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    for entry in sys.path:  # python311.zip, lib-dynload and the like: on sys.path inside the installation
        real = os.path.realpath(entry) if entry else ""
        if real and any(real.startswith(p + os.sep) for p in prefixes):
            roots.add(entry)
    roots.add(package)
    out = set()
    for r in roots:
        if r:
            out.add(os.path.abspath(r))
            out.add(os.path.realpath(r))
    return tuple(sorted(out)) + SYSTEM_DIRS


def inside(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


class Recorder:
    """Records the files, directories and environment variables read between `start()` and `stop()`."""

    def __init__(self, package: str, root: str):
        self.roots = excluded_roots(package)
        self.project = (os.path.abspath(root), os.path.realpath(root))
        self.files: dict[str, str | None] = {}
        self.dirs: dict[str, str | None] = {}
        self.env: dict[str, str | None] = {}
        self.written: set[str] = set()
        self.relative = False  # some recorded path was relative: the current directory is an input
        self.cwd = os.getcwd()
        self.overflow = False
        self.active = False
        self._busy = False
        self._installed = False
        self._seen: set = set()  # paths already stat'ed, as given

    # -- who is asking ----------------------------------------------------------------------------

    def _caller(self, depth: int) -> str | None:
        """'user', 'library' or 'import' for the first frame from `depth` up (0: _caller itself) that is not a path or os helper."""
        frame = sys._getframe(depth)
        while frame is not None:
            name = frame.f_code.co_filename
            if name in IMPORT_FRAMES:
                return "import"
            if name in SKIPPED_FRAMES or os.path.basename(name) in SKIPPED_FRAMES:
                frame = frame.f_back
                continue
            if name.startswith("<"):
                return "user"  # exec'd code or a frozen module other than the helpers: count it
            return "library" if inside(os.path.abspath(name), self.roots) else "user"
        return None

    def _guarded(self, record, *args) -> None:
        if not self.active or self._busy:
            return
        self._busy = True  # recording opens and stats files itself: those are not the model's
        try:
            record(*args)
        except Exception:  # noqa: BLE001 - recording must never change what the model sees
            self.overflow = True
        finally:
            self._busy = False

    # -- files and directories --------------------------------------------------------------------

    def _path(self, path) -> str | None:
        """The absolute path to record for `path` as given, None when it is not to be recorded."""
        if path is None or isinstance(path, int):
            return None  # an fd that is already open: its file was recorded when it was opened by name
        path = os.fsdecode(path)
        absolute = os.path.abspath(path)
        if absolute.endswith(".pyc"):
            try:
                absolute = importlib.util.source_from_cache(absolute)
            except (ValueError, NotImplementedError):
                pass
        if inside(absolute, self.roots) or inside(os.path.realpath(absolute), self.roots):
            return None
        if not os.path.isabs(path):
            self.relative = True
        return absolute

    def _add(self, table: dict, path: str, digest) -> None:
        if path in table:
            return
        if len(self.files) + len(self.dirs) >= MAX_FILES:
            self.overflow = True
            return
        table[path] = digest(path)

    def _hook(self, event: str, args) -> None:
        if event == "open":
            self._guarded(self._opened, *args[:3])
        elif event in ("os.listdir", "os.scandir"):
            self._guarded(self._listed, args[0] if args else None)

    def _opened(self, path, mode, flags) -> None:
        if isinstance(mode, str):
            reads = "r" in mode or ("a" in mode and "+" in mode)
        else:
            flags = flags or 0
            creates = flags & os.O_CREAT and flags & os.O_EXCL  # a new file: nothing of it was read
            reads = (flags & ACCESS) != os.O_WRONLY and not creates and not flags & os.O_TRUNC
        path = self._path(path) if reads else None
        if path is not None:
            self._add(self.files, path, digest_of)

    def _asked(self, path, caller: str | None) -> str | None:
        """A listed or stat'ed path to record: the model's own code asking, or a library asking about a path inside
        the project (not importlib looking for modules, not torch probing its caches in /tmp)."""
        if caller == "import" or path is None or isinstance(path, int):
            return None
        if caller == "library":
            absolute = os.path.abspath(os.fsdecode(path))
            if not (inside(absolute, self.project) or inside(os.path.realpath(absolute), self.project)):
                return None
        return self._path(path)

    def _listed(self, path) -> None:
        path = self._asked("." if path is None else path, self._caller(4))
        if path is not None:
            self._add(self.dirs, path, listing_of)

    def _statted(self, path) -> None:
        caller = self._caller(4)
        if isinstance(path, (str, bytes)):  # torch and linecache stat the same paths over and over
            seen = (path, caller, None if os.path.isabs(path) else os.getcwd())
            if seen in self._seen:
                return
            self._seen.add(seen)
        path = self._asked(path, caller)
        if path is not None:
            self._add(self.files, path, digest_of)

    # -- environment ----------------------------------------------------------------------------

    def _read(self, key, value) -> None:
        if isinstance(key, bytes):
            key, value = os.fsdecode(key), (os.fsdecode(value) if value is not None else None)
        if not isinstance(key, str) or key in self.written or key in self.env or key in PRIVATE_ENV:
            return
        if self._caller(4) == "user":
            self.env[key] = value

    def _install(self) -> None:
        if self._installed:
            return
        self._installed = True
        sys.addaudithook(self._hook)
        recorder = self
        environ_type = type(os.environ)
        get, set_, delete = environ_type.__getitem__, environ_type.__setitem__, environ_type.__delitem__
        watched = (os.environ, getattr(os, "environb", None))

        def __getitem__(environ, key):
            try:
                value = get(environ, key)
            except KeyError:
                if environ is watched[0] or environ is watched[1]:
                    recorder._guarded(recorder._read, key, None)
                raise
            if environ is watched[0] or environ is watched[1]:
                recorder._guarded(recorder._read, key, value)
            return value

        def __setitem__(environ, key, value):
            if (environ is watched[0] or environ is watched[1]) and recorder.active:
                recorder.written.add(os.fsdecode(key) if isinstance(key, bytes) else key)
            set_(environ, key, value)

        def __delitem__(environ, key):
            if (environ is watched[0] or environ is watched[1]) and recorder.active:
                recorder.written.add(os.fsdecode(key) if isinstance(key, bytes) else key)
            delete(environ, key)

        environ_type.__getitem__ = __getitem__
        environ_type.__setitem__ = __setitem__
        environ_type.__delitem__ = __delitem__

        for name in ("stat", "lstat"):  # os.path.exists, isfile, Path.is_file... all come through these
            original = getattr(os, name)

            def wrapper(path, *args, _original=original, **kwargs):
                recorder._guarded(recorder._statted, path)
                return _original(path, *args, **kwargs)

            setattr(os, name, wrapper)

    def start(self) -> None:
        self._install()
        self.active = True

    def stop(self) -> None:
        self.active = False

    def inputs(self, root: str) -> dict:
        """{"files": {path: digest}, "dirs": {path: listing}, "env": {name: value}, "cwd": dir or None}, with the
        paths inside `root` relative to it (with '/'), so a cache can move with a checkout."""
        root = os.path.realpath(root)

        def key(path: str) -> str:
            for candidate in (path, os.path.realpath(path)):
                if candidate == root:
                    return "."
                if candidate.startswith(root + os.sep):
                    return os.path.relpath(candidate, root).replace(os.sep, "/")
            return path

        return {"files": {key(p): d for p, d in sorted(self.files.items())},
                "dirs": {key(p): d for p, d in sorted(self.dirs.items())},
                "env": dict(sorted(self.env.items())),
                "cwd": key(self.cwd) if self.relative else None}


def current_cwd(root: str) -> str:
    """The current directory as `Recorder.inputs` writes it."""
    root, cwd = os.path.realpath(root), os.getcwd()
    for candidate in (cwd, os.path.realpath(cwd)):
        if candidate == root:
            return "."
        if candidate.startswith(root + os.sep):
            return os.path.relpath(candidate, root).replace(os.sep, "/")
    return cwd


def changed_input(inputs: dict, root: str, environ=None) -> str | None:
    """The first recorded input that differs now ("widths.json changed", "$WIDTH changed"), None if none did."""
    environ = os.environ if environ is None else environ
    if inputs["cwd"] is not None and inputs["cwd"] != current_cwd(root):
        return "the current directory changed (the model opens relative paths)"
    for name, value in inputs["env"].items():
        if environ.get(name) != value:
            return f"${name} changed"
    for path, digest in inputs["files"].items():
        if digest_of(os.path.join(root, path)) != digest:
            return f"{path} changed"
    for path, listing in inputs["dirs"].items():
        if listing_of(os.path.join(root, path)) != listing:
            return f"the files in {path} changed"
    return None


__all__ = ["PRIVATE_ENV", "Recorder", "changed_input", "current_cwd", "digest_of", "excluded_roots", "inside", "listing_of"]
