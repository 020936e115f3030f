"""The model file's code runs under a guard, and every command under one clock.

`user_code(what, shown)` wraps each stretch of the user's code (importing the file, calling its factories,
torch.export tracing its forward). While it runs:

- `os._exit` (and `posix._exit`, `os.abort`) raise a private exception instead of ending the process, and that
  exception, `SystemExit` (`sys.exit`), `GeneratorExit` and every other `BaseException` become one `InputError`
  (exit 2) naming the file and line. A real Ctrl-C (SIGINT from the terminal) still ends the command with 130;
  a `KeyboardInterrupt` the model raises itself is an input error like the others.
- File descriptor 1 and `sys.stdout` point at stderr, so `print`, `os.write(1, ...)` and C extensions writing to
  stdout cannot corrupt `--format json` (C stdio buffers are flushed before fd 1 is restored).

`activity(what)` names what is running ("exporting model.py"); the `--timeout` clock (`start_deadline`) and the
status line of a long capture (`status_after`) say it. The deadline is SIGALRM in the main thread raising
`DeadlineReached`, a BaseException so that the model's `except Exception` cannot swallow it; in the CLI process
a watchdog thread also ends the process with exit 2 a few seconds later, should the main thread be stuck in C
code or the model catch everything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback

from depthscope.errors import EXIT_USAGE, InputError

_REAL_EXIT = os._exit
_REAL_ABORT = getattr(os, "abort", None)
WATCHDOG_GRACE_S = 3.0  # after the deadline, how long the main thread has to unwind before the process ends

# ---------------------------------------------------------------------------------------------
# What is running


_activities: list[tuple[str, float]] = []
_finished: list[str] = []  # the last activity that ended, for a deadline between two


@contextlib.contextmanager
def activity(what: str):
    """Name what runs inside the block ("exporting model.py") for the timeout message and the status line."""
    entry = (what, time.monotonic())
    _activities.append(entry)
    try:
        yield
    finally:
        if entry in _activities:
            _activities.remove(entry)
        _finished[:] = [what]


def current_activity() -> str | None:
    return _activities[-1][0] if _activities else None


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


def _flush_c_stdio() -> None:
    """fflush(NULL): what C code wrote to stdout through stdio goes out before fd 1 points back at stdout."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:  # noqa: BLE001 - no libc to flush (not Linux/macOS): nothing buffered there either
        pass


def _patch_exits() -> list:
    saved = []
    for module in {os, sys.modules.get("posix"), sys.modules.get("nt")} - {None}:
        for name, fake in (("_exit", _fake_exit), ("abort", _fake_abort)):
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, fake)
    return saved


def _enter() -> dict:
    saved: dict = {"exits": _patch_exits(), "stdout": sys.stdout, "fd": None, "sigint": None}
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
    sys.stdout = sys.stderr
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
    sys.stdout = saved["stdout"]
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
    if isinstance(exc, SystemExit):
        return f"sys.exit({'' if exc.code is None else repr(exc.code)})"
    return f"{exc.call}({'' if exc.code is None else repr(exc.code)})"


def _stopped(exc, abspath, shown, what, did) -> str:
    return (f"{where_in(exc, abspath, shown)}: the model's code {did} while {what} {os.path.basename(shown)}; a model "
            "file must not "
            "end the process or raise a BaseException (depthscope stopped)")


@contextlib.contextmanager
def user_code(what: str, shown: str, abspath: str | None = None):
    """Run a stretch of the model file's code (`what`: "importing", "exporting", "calling `model()` of"...).

    Exceptions pass through unchanged (the caller explains them); process exits and other BaseExceptions become
    an InputError naming `shown` (the file as the user wrote it) and the line in `abspath`.
    """
    global _depth
    outer = _depth == 0
    saved = _enter() if outer else None
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


# ---------------------------------------------------------------------------------------------
# The clock: --timeout and the status line


class DeadlineReached(BaseException):
    """--timeout ran out (a BaseException: the model's `except Exception` must not swallow it)."""


_clock: dict = {"seconds": None, "start": None, "stop": None, "command": None, "alarm": None, "hard": False}


def allow_hard_exit() -> None:
    """The CLI process (not a library caller, not a test): a stuck command may end the process at the deadline."""
    _clock["hard"] = True


def _deadline_text() -> str:
    seconds = _clock["seconds"]
    running = current_activity()
    if running is None:
        running = f"running `depthscope {_clock['command']}`" if _clock["command"] else "running"
        running += f", after {_finished[0]}" if _finished else " (loading torch, before the model file was read)"
    return f"--timeout {seconds:g} s reached while {running}; stopped"


def _on_alarm(signum, frame):
    raise DeadlineReached(_deadline_text())


def start_deadline(seconds: float, command: str | None = None) -> None:
    """End the command after `seconds`: DeadlineReached in the main thread; in the CLI process
    (`allow_hard_exit`) a watchdog thread also ends the process with exit 2 if the main thread has not unwound
    WATCHDOG_GRACE_S later."""
    stop_deadline()
    _finished.clear()
    hard = _clock["hard"]
    _clock.update(seconds=float(seconds), start=time.monotonic(), command=command)
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        _clock["alarm"] = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, float(seconds))
    if hard:
        stop = threading.Event()
        _clock["stop"] = stop
        stream = sys.stderr

        def watchdog():
            if stop.wait(seconds + WATCHDOG_GRACE_S):
                return
            try:
                stream.write(f"depthscope: error: {_deadline_text()} (the model did not stop; process ended)\n")
                stream.flush()
            except (OSError, ValueError):
                pass
            _REAL_EXIT(EXIT_USAGE)

        threading.Thread(target=watchdog, name="depthscope-timeout", daemon=True).start()


def stop_deadline() -> None:
    if _clock["alarm"] is not None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, _clock["alarm"])
        _clock["alarm"] = None
    if _clock["stop"] is not None:
        _clock["stop"].set()
        _clock["stop"] = None
    _clock.update(seconds=None, start=None, command=None)


STATUS_AFTER_S = 5.0
_status = {"enabled": False, "shown": False}


def enable_status(on: bool = True) -> None:
    """The CLI turns the status line on (once per command); the library never prints it."""
    _status.update(enabled=on, shown=False)


@contextlib.contextmanager
def status_after(seconds: float | None = None):
    """If the block runs longer than `seconds` (default STATUS_AFTER_S), print one line on stderr saying what
    runs, e.g. "depthscope: exporting model.py (5 s)..." (once per command)."""
    seconds = STATUS_AFTER_S if seconds is None else seconds
    if not _status["enabled"] or _status["shown"]:
        yield
        return
    stream, start, done = sys.stderr, time.monotonic(), threading.Event()

    def announce():
        if done.wait(seconds) or _status["shown"]:
            return
        _status["shown"] = True
        what = current_activity() or "working"
        try:
            stream.write(f"depthscope: {what} ({time.monotonic() - start:.0f} s)...\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    thread = threading.Thread(target=announce, name="depthscope-status", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
