"""Running one model's analysis in a subprocess (check/worker.py), under a timeout, from the `check` command.

The command never imports a model file itself: whatever the model does (exit, raise a BaseException, loop
forever, print, crash the interpreter) ends its own process, which this module turns into one clear error naming
the file (exit 2), and the other models are still checked. The worker's stdout and stderr both go to the check's
stderr, so `--format json` stays parseable. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from depthscope.check import worker
from depthscope.check.files import NotRegular, TooLarge, read_regular
from depthscope.check.record import PRIVATE_ENV
from depthscope.check.summary import CACHE_FORMAT
from depthscope.check.validate import validate_inputs, validate_summary
from depthscope.config import CheckEntry
from depthscope.errors import EXIT_INTERNAL, EXIT_USAGE, DepthscopeError

MAX_RESULT = 64 << 20  # bytes of result.json
MAX_RELAYED = 1 << 20  # bytes of a worker's output relayed to stderr when it cannot write there itself


class AnalysisFailed(DepthscopeError):
    """A model's analysis subprocess reported an error or ended without a result; `detail` is its traceback."""

    def __init__(self, message: str, exit_code: int, detail: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.detail = detail


def _command() -> list[str]:
    # Neither the current directory nor a script's directory goes first on the worker's sys.path (-P, or
    # dropping the entry -c adds), so a project's json.py or typing.py cannot shadow the standard library.
    bootstrap = ("import sys\n"
                 "if not getattr(sys.flags, 'safe_path', False) and sys.path and sys.path[0] == '':\n"
                 "    del sys.path[0]\n"
                 "from depthscope.check.worker import main\n"
                 "main(sys.argv[1:])\n")
    return [sys.executable, "-c", bootstrap]


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
    top = os.path.dirname(worker.PACKAGE)  # the worker imports this very depthscope
    env["PYTHONPATH"] = top + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _output_fd(stream) -> int | None:
    """stream's file descriptor when it has a real one (a terminal, a pipe, a file), else None (e.g. pytest)."""
    try:
        fd = stream.fileno()
        os.fstat(fd)
        stream.flush()
        return fd
    except (AttributeError, OSError, ValueError):
        return None


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)  # the worker and anything the model started in its group
        elif proc.poll() is None:  # pragma: no cover - not POSIX
            proc.kill()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def analyze_isolated(entry: CheckEntry, engine: str, root: str, timeout: float, debug: bool = False,
                     stderr=None) -> tuple[dict, dict | None]:
    """(summary, inputs) of one model, analyzed in a subprocess; AnalysisFailed for anything else.

    `inputs` is what the model read (check/record.py), None when the analysis must not be cached."""
    stderr = stderr if stderr is not None else sys.stderr
    directory = tempfile.mkdtemp(prefix="depthscope-check-")
    try:
        with open(os.path.join(directory, worker.REQUEST), "w", encoding="utf-8") as f:
            json.dump({"path": entry.abspath, "shown": entry.key, "engine": engine, "train": entry.train,
                       "generate": entry.generate, "root": root, "debug": debug, "timeout": min(timeout, 1e9)}, f)
        fd = _output_fd(stderr)
        log = None if fd is not None else open(os.path.join(directory, "output.log"), "w+b")
        out = fd if fd is not None else log.fileno()
        start = time.monotonic()
        try:
            proc = subprocess.Popen(_command() + [directory], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env=_environment(), start_new_session=True, close_fds=True)
        except OSError as exc:
            raise AnalysisFailed(f"internal error: cannot start the analysis subprocess ({sys.executable}): "
                                 f"{exc.strerror or exc}", EXIT_INTERNAL) from None
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc)  # on a timeout, an interrupt, and any process the model left behind
            proc.wait()
        if log is not None:
            _relay(log, stderr)
        return _result(directory, proc.returncode, timed_out, timeout, time.monotonic() - start)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _relay(log, stderr) -> None:
    log.seek(0, os.SEEK_END)
    size = log.tell()
    log.seek(max(0, size - MAX_RELAYED))
    text = log.read().decode("utf-8", errors="replace")
    log.close()
    if text:
        if size > MAX_RELAYED:
            text = f"[... {size - MAX_RELAYED} bytes of the model's output left out ...]\n" + text
        stderr.write(text if text.endswith("\n") else text + "\n")


def _result(directory: str, returncode: int, timed_out: bool, timeout: float, seconds: float):
    if timed_out:
        raise AnalysisFailed(f"the analysis did not finish within {timeout:g} s and was stopped (raise "
                             "[tool.depthscope] timeout or pass --timeout if the model needs longer)", EXIT_USAGE)
    try:
        data = json.loads(read_regular(os.path.join(directory, worker.RESULT), MAX_RESULT))
    except FileNotFoundError:
        data = None
    except (OSError, ValueError, RecursionError, TooLarge, NotRegular) as exc:
        raise AnalysisFailed(f"internal error: the analysis subprocess wrote an unreadable result ({exc})",
                             EXIT_INTERNAL) from None
    if data is None:
        if not os.path.exists(os.path.join(directory, worker.STARTED)):
            raise AnalysisFailed(f"internal error: the analysis subprocess failed before loading the model (exit "
                                 f"status {returncode}; its output is above)", EXIT_INTERNAL)
        how = (f"was killed by {_signal_name(-returncode)}" if returncode < 0
               else f"exited with status {returncode}")
        raise AnalysisFailed(f"the analysis process {how} after {seconds:.1f} s without a result: the model file "
                             "ended it (os._exit, a crash, or a signal), so this model was not checked", EXIT_USAGE)
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        raise AnalysisFailed("internal error: malformed result from the analysis subprocess", EXIT_INTERNAL)
    if not data["ok"]:
        code = data.get("exit_code")
        code = code if isinstance(code, int) and not isinstance(code, bool) and code in (1, 2, 101) else EXIT_INTERNAL
        message = data.get("message") if isinstance(data.get("message"), str) else "unknown error"
        detail = data.get("traceback") if isinstance(data.get("traceback"), str) else ""
        raise AnalysisFailed(message, code, detail)
    try:
        summary = validate_summary(data.get("summary"), CACHE_FORMAT)
        inputs = data.get("inputs")
        if inputs is not None:
            inputs = validate_inputs(inputs)
    except ValueError as exc:
        raise AnalysisFailed(f"internal error: the analysis subprocess returned a malformed summary ({exc})",
                             EXIT_INTERNAL) from None
    return summary, inputs


__all__ = ["AnalysisFailed", "analyze_isolated"]
