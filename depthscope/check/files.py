"""Files `depthscope check` reads and writes: bounded reads of regular files, atomic writes, an exclusive lock.

Nothing read here is trusted to be small or to be a regular file (a cache entry or lock replaced by a FIFO, a
device or a 10 GB file is refused, not waited on), and every write goes through a temporary file in the same
directory, so a reader never sees half of one. A replaced file keeps the mode the old one had, and a new one
gets the mode the umask gives (as `open(path, "w")` would), not mkstemp's 0600.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking, writes stay atomic
    fcntl = None  # type: ignore[assignment]


class TooLarge(OSError):
    """A file over the size its reader accepts."""


class NotRegular(OSError):
    """A path that is not a regular file (a directory, FIFO, socket or device)."""


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed), at most `limit` of them.

    Raises FileNotFoundError and the other OSErrors of open, NotRegular for anything that is not a regular file
    (opened without blocking, so a FIFO cannot hang the check) and TooLarge past `limit` bytes.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(errno.EINVAL, "not a regular file")
        if st.st_size > limit:
            raise TooLarge(errno.EFBIG, f"larger than {limit} bytes")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise TooLarge(errno.EFBIG, f"larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def write_atomic(path: str, text: str, mode: int | None = None) -> None:
    """Write `text` to `path` through a temporary file in the same directory, so readers never see half of it.

    The file gets `mode`, else the mode of the file it replaces, else 0o666 less the umask.
    """
    directory = os.path.dirname(path) or "."
    if mode is None:
        try:
            st = os.stat(path)
            mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else None
        except OSError:
            mode = None
    if mode is None:
        mode = 0o666 & ~umask()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class LockTimeout(OSError):
    """Another process held the lock for longer than the caller waits."""


@contextlib.contextmanager
def exclusive(path: str, wait: float = 120.0):
    """Hold an exclusive lock on the file `path` (created if needed, removed afterwards) for the block.

    The lock is fcntl.flock on a file that is never replaced while locked. Removing it when done is safe: a process
    that locked a file which was removed meanwhile sees that its inode is no longer at `path` and locks again.
    Raises LockTimeout after `wait` seconds, and the OSErrors of creating the file.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    deadline = time.monotonic() + wait
    while True:
        # (never through a symlink: a repository cannot make this create or lock a file elsewhere)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0), 0o666)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockTimeout(errno.EAGAIN, f"{path} is held by another process") from None
                    time.sleep(0.02)
            mine = os.fstat(fd)
            try:
                there = os.stat(path)
            except FileNotFoundError:
                there = None
            if there is not None and (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the file was removed (or replaced) after we opened it: lock the one there now
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


__all__ = ["LockTimeout", "NotRegular", "TooLarge", "exclusive", "read_regular", "umask", "write_atomic"]
