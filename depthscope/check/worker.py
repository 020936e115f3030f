"""The analysis subprocess of `depthscope check`: `python -m depthscope.check.worker DIR`.

`depthscope check` analyzes each model in a process of its own, so nothing a model file does decides the check's
exit code or output: `sys.exit(0)` or `os._exit(0)` at import or in `forward`, a `BaseException` such as
`GeneratorExit` or `KeyboardInterrupt`, an endless loop (the parent's timeout), prints or writes to fd 1 (sent
to stderr here, before the model is imported). DIR/request.json says what to analyze; the worker writes
DIR/result.json (atomically, once the analysis is over) with the summary and what the model read (see
check/record.py), or with an error. No result file means the process was ended early, which the parent reports
against the model file.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback

from depthscope.check.files import write_atomic
from depthscope.check.record import Recorder
from depthscope.errors import EXIT_INTERNAL, EXIT_USAGE, DepthscopeError

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTED = "started"  # written once depthscope and torch are imported, just before the model's code runs
REQUEST = "request.json"
RESULT = "result.json"


def describe(exc: BaseException) -> str:
    """SystemExit(0) -> 'SystemExit (sys.exit(0))': what a user recognises of the exception."""
    name = type(exc).__name__
    if isinstance(exc, SystemExit):
        return f"SystemExit (sys.exit({exc.code!r}))"
    text = str(exc)
    return f"{name} ({text[:200]})" if text else name


def analyze(request: dict, directory: str) -> dict:
    """Run the analysis the request asks for; a dict for result.json whatever happens in the model's code."""
    from depthscope.check.summary import summarize, summarize_generation
    from depthscope.model_file import user_location
    from depthscope.pipeline import analyze_subject, load_subject

    path, shown = request["path"], request["shown"]
    recorder = Recorder(PACKAGE, request["root"])
    reasons: list[str] = []
    phase = "while the model file was loaded"
    with open(os.path.join(directory, STARTED), "w"):
        pass
    recorder.start()
    try:
        subject = load_subject(path)
        phase = "while the model was analyzed"
        analysis = analyze_subject(subject, train=request["train"], engine=request["engine"],
                                   on_fallback=reasons.append)
        if request.get("generate"):
            from depthscope.generate.analysis import generation_analysis

            phase = "while the model's generation was analyzed"
            generation = generation_analysis(subject, engine=request["engine"], on_fallback=reasons.append)
        phase = "after its analysis"
    except DepthscopeError as exc:
        recorder.stop()
        return {"ok": False, "message": str(exc), "exit_code": exc.exit_code, "traceback": traceback.format_exc()}
    except Exception as exc:  # noqa: BLE001 - not a user error the pipeline recognised: depthscope's bug
        recorder.stop()
        return {"ok": False, "message": f"internal error: {type(exc).__name__}: {exc}", "exit_code": EXIT_INTERNAL,
                "traceback": traceback.format_exc()}
    except BaseException as exc:  # noqa: BLE001 - sys.exit, KeyboardInterrupt, GeneratorExit... from the model
        recorder.stop()
        where = user_location(exc, os.path.abspath(path), shown)
        return {"ok": False, "exit_code": EXIT_USAGE, "traceback": traceback.format_exc(),
                "message": f"{where}: the model file raised {describe(exc)} {phase}; a model file must not exit "
                           "or raise BaseException, so this model was not checked"}
    recorder.stop()
    summary = summarize(analysis, reasons[0] if reasons else None)
    if request.get("generate"):
        summary.update(summarize_generation(generation))
    inputs = None if recorder.overflow else recorder.inputs(request["root"])
    return {"ok": True, "summary": summary, "inputs": inputs}


def die_with_parent(timeout: float) -> None:
    """End this process when `depthscope check` ends (killed, interrupted, its CI job cancelled), and a little after
    its timeout in any case: an orphaned analysis of a model that loops would otherwise run forever."""
    parent = os.getppid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError, TypeError, ValueError):
        pass
    deadline = time.monotonic() + timeout + 30

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent or time.monotonic() > deadline:
                os._exit(3)

    threading.Thread(target=watch, name="depthscope-watchdog", daemon=True).start()


def main(argv: list[str]) -> None:
    os.dup2(2, 1)  # whatever the model prints, and whatever writes to fd 1, goes to stderr
    directory = argv[0]
    with open(os.path.join(directory, REQUEST), encoding="utf-8") as f:
        request = json.load(f)
    die_with_parent(float(request.get("timeout") or 3600))
    import depthscope.pipeline  # noqa: F401 - torch: a failure here is the environment's, before STARTED

    try:
        result = analyze(request, directory)
        text = json.dumps(result)
    except BaseException as exc:  # noqa: BLE001 - e.g. a model's object that breaks summarizing
        result = {"ok": False, "exit_code": EXIT_INTERNAL, "traceback": traceback.format_exc(),
                  "message": f"internal error: {type(exc).__name__} while summarizing the analysis: {exc}"}
        text = json.dumps(result)
    write_atomic(os.path.join(directory, RESULT), text, mode=0o600)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)  # no atexit handler or thread of the model runs after the result is written


if __name__ == "__main__":
    main(sys.argv[1:])
