"""The model file's code runs under a guard.

`user_code(what, shown)` wraps each stretch of the user's code (importing the file, calling its factories,
torch.export tracing its forward). While it runs:

- `os._exit` (and `posix._exit`, `os.abort`) raise a private exception instead of ending the process, and that
  exception, `SystemExit` (`sys.exit`), `GeneratorExit` and every other `BaseException` become one `InputError`
  (exit 2) naming the file and line. A real Ctrl-C (SIGINT from the terminal) still ends the command with 130;
  a `KeyboardInterrupt` the model raises itself is an input error like the others. The clock's
  `DeadlineReached` (--timeout) passes through.
- File descriptor 1 and `sys.stdout` point at stderr, so `print`, `os.write(1, ...)` and C extensions writing to
  stdout cannot corrupt `--format json` (C stdio buffers are flushed before fd 1 is restored); sys.stderr and the
  working directory are put back as they were.

The stretch is named as an activity (depthscope/clock.py) for the timeout message and the status line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback

from depthscope.clock import DeadlineReached, activity, alarm_deferred
from depthscope.errors import InputError

_REAL_EXIT = os._exit
_REAL_ABORT = getattr(os, "abort", None)

# ---------------------------------------------------------------------------------------------
# The user's code


class _ModelExit(BaseException):
    """os._exit (or os.abort) called by the model's code while the guard is on."""

    def __init__(self, call: str, code=None):
        super().__init__(call, code)
        self.call = call
        self.code = code


_PID = os.getpid()


def _fake_exit(code=0):
    if os.getpid() != _PID:  # a process the model forked (a DataLoader worker) ends as it means to
        _REAL_EXIT(code)
    raise _ModelExit("os._exit", code)


def _fake_abort():
    if os.getpid() != _PID and _REAL_ABORT is not None:
        _REAL_ABORT()
    raise _ModelExit("os.abort")


_depth = 0
_sigint = {"seen": False, "watching": False}
_model = {"shown": None}  # the last model file whose code ran: the CLI names it for exits that escape user_code


def _on_sigint(signum, frame):
    _sigint["seen"] = True
    raise KeyboardInterrupt


_libc: list = []


def _flush_c_stdio() -> None:
    """fflush(NULL): what C code wrote to stdout through stdio goes out before fd 1 points back at stdout."""
    if not _libc:
        try:
            import ctypes

            _libc.append(ctypes.CDLL(None))
        except Exception:  # noqa: BLE001 - no libc to flush (not Linux/macOS): nothing buffered there either
            _libc.append(None)
    if _libc[0] is not None:
        try:
            _libc[0].fflush(None)
        except Exception:  # noqa: BLE001
            pass


def _patch_exits() -> list:
    saved = []
    for module in {os, sys.modules.get("posix"), sys.modules.get("nt")} - {None}:
        for name, fake in (("_exit", _fake_exit), ("abort", _fake_abort)):
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, fake)
    return saved


class _Unclosable:
    """sys.stdout while the model runs: stderr, which the model's `sys.stdout.close()` must not close."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def close(self):
        pass

    def write(self, text):
        return self._stream.write(text)

    def flush(self):
        return self._stream.flush()


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def _enter() -> dict:
    saved: dict = {"exits": _patch_exits(), "stdout": sys.stdout, "stderr": sys.stderr, "fd": None, "sigint": None,
                   "cwd": _cwd()}
    try:
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):
        pass
    _flush_c_stdio()
    try:
        saved["fd"] = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # fd 1 or 2 closed: nothing to redirect
        if saved["fd"] is not None:
            os.close(saved["fd"])
        saved["fd"] = None
    sys.stdout = _Unclosable(sys.stderr)
    _sigint.update(seen=False, watching=False)
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                saved["sigint"] = signal.signal(signal.SIGINT, _on_sigint)
                _sigint["watching"] = True
        except (ValueError, OSError):
            pass
    return saved


def _leave(saved: dict) -> None:
    try:
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):
        pass
    _flush_c_stdio()
    if saved["fd"] is not None:
        try:
            os.dup2(saved["fd"], 1)
        finally:
            os.close(saved["fd"])
    sys.stdout, sys.stderr = saved["stdout"], saved["stderr"]
    if saved["cwd"] is not None and _cwd() != saved["cwd"]:  # a model that chdir()s must not move relative paths
        try:
            os.chdir(saved["cwd"])
        except OSError:
            pass
    for module, name, value in saved["exits"]:
        setattr(module, name, value)
    if saved["sigint"] is not None:
        _sigint["watching"] = False
        try:
            signal.signal(signal.SIGINT, saved["sigint"])
        except (ValueError, OSError):
            pass


def exception_text(exc: BaseException, limit: int = 400) -> str:
    """The first line of an exception's message, at most `limit` characters; never raises (a hostile __str__)."""
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001
        try:
            text = repr(exc)
        except BaseException:  # noqa: BLE001
            text = ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def where_in(exc: BaseException, abspath: str | None, shown: str) -> str:
    """file:line of the deepest traceback frame in the user's file (else the file alone)."""
    line = None
    if abspath:
        for frame in traceback.extract_tb(exc.__traceback__):
            if os.path.abspath(frame.filename) == abspath:
                line = frame.lineno
    return f"{shown}:{line}" if line else shown


def _call(exc: BaseException) -> str:
    code = "" if exc.code is None else _short_repr(exc.code)
    return f"sys.exit({code})" if isinstance(exc, SystemExit) else f"{exc.call}({code})"


def _short_repr(value, limit: int = 60) -> str:
    try:
        text = repr(value)
    except BaseException:  # noqa: BLE001 - a hostile __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stopped(exc, abspath, shown, what, did) -> str:
    return (f"{where_in(exc, abspath, shown)}: the model's code {did} while {what} {os.path.basename(shown)}; a model "
            "file must not end the process or raise a BaseException")


@contextlib.contextmanager
def user_code(what: str, shown: str, abspath: str | None = None):
    """Run a stretch of the model file's code (`what`: "importing", "exporting", "calling `model()` of"...).

    Exceptions pass through unchanged (the caller explains them); process exits and other BaseExceptions become
    an InputError naming `shown` (the file as the user wrote it) and the line in `abspath`.
    """
    global _depth
    outer = _depth == 0
    if outer:
        with alarm_deferred():
            saved = _enter()
    _depth += 1
    _model["shown"] = shown
    try:
        with activity(f"{what} {shown}"):
            yield
    except (Exception, DeadlineReached):
        raise
    except KeyboardInterrupt as exc:
        if _sigint["seen"] or not _sigint["watching"] or not outer:
            raise  # Ctrl-C (or no way to tell): the command ends with 130
        raise InputError(_stopped(exc, abspath, shown, what, "raised KeyboardInterrupt")) from exc
    except _ModelExit as exc:
        raise InputError(_stopped(exc, abspath, shown, what, f"called {_call(exc)}")) from exc
    except SystemExit as exc:
        raise InputError(_stopped(exc, abspath, shown, what, f"called {_call(exc)}")) from exc
    except BaseException as exc:  # noqa: BLE001 - GeneratorExit and the like: the model's, never ours
        text = exception_text(exc)
        raise InputError(_stopped(exc, abspath, shown, what, f"raised {type(exc).__name__}" + (f" ({text})" if text else ""))) from exc
    finally:
        _depth -= 1
        if outer:
            with alarm_deferred():
                _leave(saved)


def exits_guarded():
    """For the CLI: os._exit and os.abort raise instead of ending the process for as long as the block runs
    (the model's code may run outside `user_code`, e.g. validate's timed calls); returns a context manager."""

    @contextlib.contextmanager
    def guarded():
        saved = _patch_exits()
        try:
            yield
        finally:
            for module, name, value in saved:
                setattr(module, name, value)

    return guarded()


def escaped_model_exit(exc: BaseException, command: str) -> str | None:
    """The message for a process exit or BaseException that escaped `user_code` (the model's code also runs
    outside it, e.g. validate's timed calls), or None when no model file has run: then it is not the model's."""
    if _model["shown"] is None:
        return None
    if isinstance(exc, (_ModelExit, SystemExit)):
        what = f"called {_call(exc)}"
    else:
        what = f"raised {type(exc).__name__}"
    return (f"{_model['shown']}: the model's code {what} while running `depthscope {command}`; a model file must "
            "not end the process")


def forget_model() -> None:
    _model["shown"] = None
