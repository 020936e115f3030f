"""What runs, and the command's clock: `--timeout S` and the status line of a long capture.

`activity(what)` names what is running ("exporting model.py"). The deadline (`start_deadline`) is SIGALRM in
the main thread raising `DeadlineReached`, a BaseException so that the model's `except Exception` cannot swallow
it; in the CLI process (`allow_hard_exit`) a watchdog thread also ends the process with exit 2 a few seconds
later, should the main thread be stuck in C code or the model catch everything. `status_after` prints one line
on stderr when a block (a capture) runs longer than STATUS_AFTER_S, once per command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

from depthscope.errors import EXIT_USAGE

_REAL_EXIT = os._exit
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


_deferred = {"depth": 0, "pending": False}


def _on_alarm(signum, frame):
    if _deferred["depth"]:
        _deferred["pending"] = True
        return
    raise DeadlineReached(_deadline_text())


@contextlib.contextmanager
def alarm_deferred():
    """The deadline waits until the block is done (the guard swapping stdout and the exits), then fires.

    (Blocking SIGALRM would not do: Python runs its handlers in the main thread whichever thread the kernel
    delivered the signal to.)"""
    _deferred["depth"] += 1
    try:
        yield
    finally:
        _deferred["depth"] -= 1
        if not _deferred["depth"] and _deferred["pending"]:
            # re-arm rather than raise here: the block may be unwinding with an exception that a caller catches
            # (an export failure before the fitted fallback), which would swallow a DeadlineReached raised with it
            _deferred["pending"] = False
            if _clock["alarm"] is not None:
                signal.setitimer(signal.ITIMER_REAL, 1e-3)


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
    _deferred["pending"] = False
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
