"""The command line's own inputs: one-line usage errors, `depthscope: warning:` lines, sizes too large for torch,
`--timeout S` on every command that runs a model, and the status line of a long capture."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import depthscope.cli as cli
import depthscope.pipeline  # noqa: F401 - torch and the engine loaded before any 0.7 s deadline starts
import depthscope.predict.validate  # noqa: F401


@pytest.fixture(scope="module", autouse=True)
def warm_export():
    """One export first: a 0.7 s deadline must not land inside torch's lazy imports (a half-imported torch._dynamo
    breaks every later export in this process; the CLI's own process ends with the command)."""
    import torch

    torch.export.export(torch.nn.Linear(2, 2), (torch.randn(3, 2),))
from conftest import ROOT, example


def clock():
    import depthscope.clock

    return depthscope.clock


def run(capsys, argv):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


USAGE = {
    "no such option": ["analyze", example("attention.py"), "--no-such-flag"],
    "bad choice": ["analyze", example("attention.py"), "--format", "yaml"],
    "missing path": ["analyze"],
    "extra argument": ["analyze", example("attention.py"), "extra.py"],
    "no such command": ["analyse", example("attention.py")],
    "option without its value": ["analyze", example("attention.py"), "--engine"],
    "validate without --sizes": ["validate", example("attention.py")],
    "validate bad --repeats": ["validate", example("attention.py"), "--sizes", "n=4,8", "--repeats", "zero"],
    "predict bad --format": ["predict", example("attention.py"), "--format", "xml"],
    "bad --timeout": ["analyze", example("attention.py"), "--timeout", "soon"],
    "negative --timeout": ["predict", example("attention.py"), "--timeout", "-3"],
    "nan --timeout": ["validate", example("attention.py"), "--sizes", "n=4,8", "--timeout", "nan"],
    "infinite --timeout": ["analyze", example("attention.py"), "--timeout", "inf"],
}


@pytest.mark.parametrize("case", list(USAGE), ids=list(USAGE))
def test_usage_errors_are_one_line(case, capsys):
    code, out, lines = run(capsys, USAGE[case])
    assert code == 2 and out == ""
    assert len(lines) == 1, lines
    assert lines[0].startswith("depthscope: error: ") and "--help" in lines[0]
    assert not any(line.startswith(("Usage:", "Try ", "Error:")) for line in lines)


HUGE = "9" * 400


@pytest.mark.parametrize("argv", [
    ["analyze", example("attention.py"), "--at", "b=2", "--at", f"n={HUGE}"],
    ["analyze", example("attention.py"), "--at", "b=2", "--at", f"n={'1' * 5000}"],
    ["analyze", example("attention.py"), "--at", "b=2", "--at", f"n={2**63}"],
    ["analyze", example("attention.py"), "--at", "b=2", "--at", f"n={'0' * 5000}7"],
    ["predict", example("attention.py"), "--at", f"n={HUGE}"],
    ["predict", example("attention.py"), "--at", f"n=64,{HUGE}"],
    ["validate", example("attention.py"), "--sizes", f"n=4,{HUGE}"],
    ["validate", example("attention.py"), "--sizes", "n=4,8", "--at", f"b={HUGE}"],
], ids=["analyze-400", "analyze-5000", "analyze-2**63", "analyze-leading-zeros", "predict-400", "predict-list",
        "validate-sizes", "validate-at"])
def test_sizes_too_large_for_torch_are_exit_2(argv, capsys):
    code, out, lines = run(capsys, argv)
    assert code == 2 and out == "" and len(lines) == 1, lines
    assert "too large" in lines[0] and "2**63 - 1" in lines[0] and "internal error" not in lines[0]


def test_the_largest_size_still_evaluates(capsys):
    code, out, lines = run(capsys, ["analyze", example("attention.py"), "--format", "json", "--at", "b=2",
                                    "--at", f"n={2**63 - 1}"])
    assert code == 0, lines
    assert json.loads(out)["values"]["work"] > 2**126


def test_at_accepts_unicode_dim_names(write_model, capsys):
    path = write_model('''
import torch
from torch.export import Dim
model = torch.nn.Softmax(-1)
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {"input": {1: Dim("ñ")}}
''')
    code, out, lines = run(capsys, ["analyze", path, "--format", "json", "--at", "ñ=64"])
    assert code == 0, lines
    assert json.loads(out)["at"] == {"ñ": 64}


CUSTOM_OP = '''
import torch
from torch.export import Dim
@torch.library.custom_op("depthscope_inputs_test::opaque", mutates_args=())
def opaque(x: torch.Tensor) -> torch.Tensor:
    return x.clone()
@opaque.register_fake
def _(x):
    return torch.empty_like(x)
class M(torch.nn.Module):
    def forward(self, x):
        return opaque(x) + 1
model = M
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {"x": {1: Dim("n")}}
'''

GUARDED = '''
import torch
from torch.export import Dim
class M(torch.nn.Module):
    def forward(self, x):
        if x.shape[1] > 128:
            return x * 2
        return x + 1
model = M
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {"x": {1: Dim("n")}}
'''


@pytest.mark.parametrize("source,fragment", [(CUSTOM_OP, "no cost rule"), (GUARDED, "falling back")],
                         ids=["unmodeled", "fallback"])
def test_warnings_start_with_depthscope_warning(source, fragment, write_model, capsys):
    code, out, lines = run(capsys, ["analyze", write_model(source), "--format", "json"])
    assert code == 0
    json.loads(out)
    warnings = [line for line in lines if fragment in line]
    assert warnings and all(line.startswith("depthscope: warning: ") for line in warnings), lines


# ---------------------------------------------------------------------------------------------
# --timeout

SLOW = '''
import time, torch
from torch.export import Dim
{at_import}
class M(torch.nn.Module):
    def forward(self, x):
        {forward}
        return x.softmax(-1)
model = M
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {{"x": {{1: Dim("n")}}}}
'''


def slow(at_import="pass", forward="pass") -> str:
    return SLOW.format(at_import=at_import, forward=forward)


TIMEOUTS = {
    "import sleeps": (slow(at_import="time.sleep(60)"), "importing"),
    "import spins": (slow(at_import="while True:\n    pass"), "importing"),
    "forward sleeps": (slow(forward="time.sleep(60)"), "exporting"),
    "forward spins, catching Exception": (slow(forward="while True:\n            try:\n                pass\n"
                                                       "            except Exception:\n                pass"),
                                          "exporting"),
    "factory sleeps": (slow() + "def model():\n    time.sleep(60)\n    return M()\n", "calling `model()`"),
}


@pytest.mark.parametrize("command", [["analyze"], ["predict"], ["validate", "--sizes", "n=4,8", "--repeats", "1"],
                                     ["analyze", "--engine", "fitted"]],
                         ids=["analyze", "predict", "validate", "fitted"])
@pytest.mark.parametrize("case", list(TIMEOUTS), ids=list(TIMEOUTS))
def test_timeout_ends_the_command_saying_what_ran(case, command, write_model, capsys):
    source, doing = TIMEOUTS[case]
    path = write_model(source, name="slow_model.py")
    start = time.monotonic()
    code, out, lines = run(capsys, [command[0], path, *command[1:], "--timeout", "0.7"])
    assert time.monotonic() - start < 30
    assert code == 2 and out == "" and len(lines) == 1, lines
    assert lines[0].startswith("depthscope: error: --timeout 0.7 s") and doing in lines[0]
    assert "slow_model.py" in lines[0]
    # the clock is off again, and SIGALRM is what it was
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)


def test_timeout_that_is_not_reached_changes_nothing(capsys):
    code, out, lines = run(capsys, ["analyze", example("attention.py"), "--format", "json", "--timeout", "300"])
    assert code == 0 and lines == [] and json.loads(out)["engine"] == "symbolic"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_timeout_during_validate_timing(write_model, capsys):
    # quick to export, slow to run: the deadline comes while validate times the model
    path = write_model(slow(forward="if not torch.compiler.is_compiling() and not isinstance(x, "
                                    "torch._subclasses.FakeTensor) and x.shape[1] == 8: time.sleep(60)"))
    code, out, lines = run(capsys, ["validate", path, "--sizes", "n=4,8", "--repeats", "1", "--timeout", "6"])
    assert code == 2 and len(lines) >= 1 and "--timeout 6 s reached" in lines[-1], lines
    assert "validate" in lines[-1]


def test_a_model_that_swallows_the_timeout_is_still_stopped(tmp_path):
    """A model that keeps the main thread (SIGALRM blocked, a catch-all loop, C code): the CLI process ends
    itself, exit 2, a few seconds after the deadline."""
    path = tmp_path / "stubborn.py"
    # the model takes SIGALRM for itself and spins: only the watchdog can end it (deterministically, unlike a
    # catch-all loop, which the alarm may hit between two of its tries)
    # (at import, so that a slow export on a loaded machine cannot let the alarm in before the model takes it)
    path.write_text(slow(at_import="import signal\nsignal.signal(signal.SIGALRM, lambda *args: None)",
                         forward="import signal\n        signal.signal(signal.SIGALRM, lambda *args: None)\n"
                                 "        while True:\n            pass"))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "depthscope", "analyze", str(path), "--timeout", "8"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 2, proc.stderr
    assert "--timeout 8 s reached while exporting" in proc.stderr and "stubborn.py" in proc.stderr
    assert "process ended" in proc.stderr  # the watchdog, not the main thread, ended it
    assert time.monotonic() - start < 8 + 3 + 20


# ---------------------------------------------------------------------------------------------
# status line

STATUS = re.compile(r"^depthscope: exporting \S*slow_model\.py \(\d+ s\)\.\.\.$")


def test_status_line_after_5_seconds_by_default():
    assert clock().STATUS_AFTER_S == 5.0


@pytest.mark.parametrize("engine", ["symbolic", "fitted"])
def test_a_long_capture_prints_one_status_line(engine, monkeypatch, write_model, capsys):
    monkeypatch.setattr(clock(), "STATUS_AFTER_S", 0.2)
    path = write_model(slow(forward="time.sleep(0.5)"), name="slow_model.py")
    code, out, lines = run(capsys, ["analyze", path, "--engine", engine, "--format", "json"])
    assert code == 0, lines
    json.loads(out)
    status = [line for line in lines if line.startswith("depthscope: exporting")]
    assert len(status) == 1 and STATUS.match(status[0]), lines


def test_a_quick_capture_prints_nothing(monkeypatch, write_model, capsys):
    monkeypatch.setattr(clock(), "STATUS_AFTER_S", 3.0)
    code, out, lines = run(capsys, ["analyze", write_model(slow(), name="slow_model.py"), "--format", "json"])
    assert code == 0 and lines == []


def test_the_library_prints_no_status_line(monkeypatch, write_model, capfd):
    import depthscope

    monkeypatch.setattr(clock(), "STATUS_AFTER_S", 0.1)
    depthscope.analyze_file(write_model(slow(forward="time.sleep(0.3)"), name="slow_model.py"))
    assert "depthscope:" not in capfd.readouterr().err


def test_a_deadline_deferred_in_a_block_that_fails_still_fires():
    """The alarm lands while the guard defers it, and the block then raises an error its caller handles (as an
    export failure before the fitted fallback is): the deadline must still end the command after the block."""
    from depthscope import clock

    clock.start_deadline(0.05, "analyze")
    try:
        with pytest.raises(clock.DeadlineReached):
            try:
                with clock.alarm_deferred():
                    time.sleep(0.2)  # the alarm arrives here and waits
                    raise ValueError("export failed")
            except ValueError:
                pass  # handled, as the fallback does
            time.sleep(1.0)  # the command goes on: the re-armed deadline interrupts it
    finally:
        clock.stop_deadline()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
