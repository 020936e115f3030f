"""The key that signs `depthscope check`'s cache entries (HMAC-SHA256), kept outside every repository.

The key lives in the user's cache directory: `$DEPTHSCOPE_CACHE_KEY_FILE` when set (CI: a file from a secret,
or one per job class), else `$XDG_CACHE_HOME/depthscope/key`, else `~/.cache/depthscope/key`. It is 32 random
bytes (hex), created on first use with mode 0600, atomically (a hard link of a finished file), so two checks
starting together agree on one key. An entry whose signature does not verify (edited by hand, restored from a
cache another key wrote, copied from another model) is re-analyzed, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time

from depthscope.check.files import NotRegular, TooLarge, read_regular

KEY_ENV = "DEPTHSCOPE_CACHE_KEY_FILE"
MIN_KEY = 32  # bytes of key material


class KeyUnavailable(Exception):
    """No key can be read or created: the cache is not used."""


def key_path() -> str:
    explicit = os.environ.get(KEY_ENV)
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "depthscope", "key")


def _read(path: str) -> bytes:
    data = read_regular(path, 4096).strip()
    if len(data) < MIN_KEY:
        raise KeyUnavailable(f"{path} holds fewer than {MIN_KEY} bytes")
    return data


def _create(path: str) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".key-")  # 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process made first
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: exclusive create, then write
            with contextlib.suppress(FileExistsError):
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(out, "w") as f:
                    f.write(secrets.token_hex(32) + "\n")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def signing_key(path: str | None = None) -> bytes:
    """The key's bytes, creating the key file when there is none; KeyUnavailable when neither works."""
    path = path or key_path()
    for attempt in range(4):
        try:
            return _read(path)
        except FileNotFoundError:
            try:
                _create(path)
            except OSError as exc:
                raise KeyUnavailable(f"cannot create {path}: {exc.strerror or exc}") from None
        except KeyUnavailable:
            if attempt == 3:  # (a key file another process is still writing, without hard links)
                raise
            time.sleep(0.05)
        except (OSError, TooLarge, NotRegular) as exc:
            raise KeyUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None
    raise KeyUnavailable(f"cannot read {path}")


def canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(key: bytes, data: dict) -> str:
    return hmac.new(key, canonical(data), hashlib.sha256).hexdigest()


def verify(key: bytes, data: dict, mac) -> bool:
    return isinstance(mac, str) and hmac.compare_digest(sign(key, data), mac)


__all__ = ["KEY_ENV", "KeyUnavailable", "canonical", "key_path", "sign", "signing_key", "verify"]
