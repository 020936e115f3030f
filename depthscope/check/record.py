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
- Environment variables: every read through `os.environ` (`os.environ[...]`, `.get`, `in`, `os.getenv`,
  `os.path.expanduser`) made by code outside the Python installation, site-packages and depthscope: the model
  file, the project's modules, editable installs. A variable the model sets before it reads it is not an input.

Not recorded: reads by C or C++ code (getenv in a torch kernel), by subprocesses, directory listings and
os.stat. Nothing imported here touches torch.
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
SKIPPED_FRAMES = ("os.py", "_collections_abc.py", "posixpath.py", "genericpath.py", "ntpath.py")
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
    """Records the files and environment variables read between `start()` and `stop()`, in this process."""

    def __init__(self, package: str):
        self.roots = excluded_roots(package)
        self.files: dict[str, str | None] = {}
        self.env: dict[str, str | None] = {}
        self.written: set[str] = set()
        self.overflow = False
        self.active = False
        self._busy = False
        self._installed = False
        self._originals: dict = {}

    # -- files ----------------------------------------------------------------------------------

    def _hook(self, event: str, args) -> None:
        if event != "open" or not self.active or self._busy:
            return
        self._busy = True  # digest_of opens the file: that event is ours
        try:
            self._opened(*args[:3])
        except Exception:  # noqa: BLE001 - recording must never change what the model sees
            self.overflow = True
        finally:
            self._busy = False

    def _opened(self, path, mode, flags) -> None:
        if isinstance(path, int) or path is None:
            return  # an fd that is already open: its file was recorded when it was opened by name
        path = os.fsdecode(path)
        if isinstance(mode, str):
            reads = "r" in mode or ("a" in mode and "+" in mode)
        else:
            flags = flags or 0
            creates = flags & os.O_CREAT and flags & os.O_EXCL  # a new file: nothing of it was read
            reads = (flags & ACCESS) != os.O_WRONLY and not creates and not flags & os.O_TRUNC
        if not reads:
            return
        path = os.path.abspath(path)
        if path.endswith(".pyc"):
            try:
                path = importlib.util.source_from_cache(path)
            except (ValueError, NotImplementedError):
                pass
        if path in self.files or inside(path, self.roots) or inside(os.path.realpath(path), self.roots):
            return
        if len(self.files) >= MAX_FILES:
            self.overflow = True
            return
        self.files[path] = digest_of(path)

    # -- environment ----------------------------------------------------------------------------

    def _reader_is_user(self) -> bool:
        frame = sys._getframe(3)
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith("<frozen") or os.path.basename(name) in SKIPPED_FRAMES:
                frame = frame.f_back
                continue
            if name.startswith("<"):
                return True  # exec'd code: the model's
            return not inside(os.path.abspath(name), self.roots)
        return False

    def _read(self, key, value) -> None:
        if isinstance(key, bytes):
            key, value = os.fsdecode(key), (os.fsdecode(value) if value is not None else None)
        if not self.active or self._busy or not isinstance(key, str) or key in self.written or key in self.env:
            return
        if key in PRIVATE_ENV:
            return
        self._busy = True
        try:
            if self._reader_is_user():
                self.env[key] = value
        except Exception:  # noqa: BLE001
            self.overflow = True
        finally:
            self._busy = False

    def _install(self) -> None:
        if self._installed:
            return
        self._installed = True
        sys.addaudithook(self._hook)
        environ_type = type(os.environ)
        get, set_, delete = environ_type.__getitem__, environ_type.__setitem__, environ_type.__delitem__
        self._originals = {"__getitem__": get, "__setitem__": set_, "__delitem__": delete}
        recorder = self
        watched = (os.environ, getattr(os, "environb", None))

        def __getitem__(environ, key):
            try:
                value = get(environ, key)
            except KeyError:
                if environ is watched[0] or environ is watched[1]:
                    recorder._read(key, None)
                raise
            if environ is watched[0] or environ is watched[1]:
                recorder._read(key, value)
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

    def start(self) -> None:
        self._install()
        self.active = True

    def stop(self) -> None:
        self.active = False

    def inputs(self, root: str) -> dict:
        """{"files": {path: digest}, "env": {name: value}}; paths inside `root` relative to it, with '/'."""
        root = os.path.realpath(root)
        files = {}
        for path, digest in sorted(self.files.items()):
            real = os.path.realpath(path)
            key = path
            for candidate in (path, real):
                if candidate.startswith(root + os.sep):
                    key = os.path.relpath(candidate, root).replace(os.sep, "/")
                    break
            files[key] = digest
        return {"files": files, "env": dict(sorted(self.env.items()))}


def changed_input(inputs: dict, root: str, environ=None) -> str | None:
    """The first recorded input that differs now ("widths.json changed", "$WIDTH changed"), None if none did."""
    environ = os.environ if environ is None else environ
    for name, value in inputs["env"].items():
        if environ.get(name) != value:
            return f"${name} changed"
    for path, digest in inputs["files"].items():
        full = os.path.join(root, path)
        if digest_of(full) != digest:
            return f"{path} changed"
    return None


__all__ = ["Recorder", "changed_input", "digest_of", "excluded_roots", "inside"]
