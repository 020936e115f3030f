"""The model file does not decide `depthscope check`'s exit code or output (issue 11, item 2).

Each model is analyzed in a subprocess under a timeout: exiting (sys.exit, os._exit), raising a BaseException,
looping forever, killing its own process or printing is one error (exit 2) naming the file, and the models
after it are still checked. These run `depthscope check` as a real process, as pre-commit and CI do.
"""

import json
import os
import subprocess
import sys

import pytest

from check_models import SCALE, Project, hostile

KEY_ENV = "DEPTHSCOPE_CACHE_KEY_FILE"


@pytest.fixture(autouse=True)
def cache_key(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(KEY_ENV, str(tmp_path_factory.getbasetemp() / "depthscope-test-key"))


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A cache holding after.py's analysis, so the hostile cases run only their own model, under a short timeout."""
    root = tmp_path_factory.mktemp("warm")
    cache = root / "cache"
    Project(root, cache).write([{"path": "after.py", "depth": "1"}], models={"after.py": SCALE})
    os.environ[KEY_ENV] = str(tmp_path_factory.getbasetemp() / "depthscope-test-key")
    try:
        assert _check(root).returncode == 0
    finally:
        del os.environ[KEY_ENV]
    return cache


def _check(root, *args, timeout=120):
    command = [sys.executable, "-m", "depthscope", "check", "--config", str(root / "pyproject.toml"), *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(root))


CASES = {  # name: (model source, what the one error line says)
    "exit_at_import": (hostile("import sys\nsys.exit(0)"), "called sys.exit(0) while importing"),
    "os_exit_at_import": (hostile("import os\nos._exit(0)"), "called os._exit(0) while importing"),
    "exit_in_forward": (hostile("import sys; sys.exit(0)", "forward"), "called sys.exit(0) while exporting"),
    "os_exit_in_forward": (hostile("import os; os._exit(0)", "forward"), "called os._exit(0) while exporting"),
    "generator_exit": (hostile("raise GeneratorExit", "forward"), "raised GeneratorExit"),
    "keyboard_interrupt": (hostile("raise KeyboardInterrupt"), "raised KeyboardInterrupt"),
    "base_exception": (hostile("class Stop(BaseException):\n    pass\nraise Stop('now')"), "raised Stop (now)"),
    "kills_itself": (hostile("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"), "was killed by SIGKILL"),
    "loops_forever": (hostile("while True:\n    pass"), "did not finish within 5 s"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_model_file_cannot_end_the_check(tmp_path, warm_cache, name):
    source, fragment = CASES[name]
    project = Project(tmp_path, warm_cache)
    timeout = 5 if name == "loops_forever" else 300  # (after.py comes from the cache: only the loop times out)
    project.write([{"path": f"{name}.py", "depth": "1"}, {"path": "after.py", "depth": "1"}],
                  tool={"timeout": timeout}, models={f"{name}.py": source, "after.py": SCALE})
    proc = _check(tmp_path, "--format", "json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)  # still one parseable object on stdout
    (error,) = [f for f in data["findings"] if f["kind"] == "error"]
    assert error["path"] == f"{name}.py" and error["message"].startswith(f"{name}.py") and fragment in error["message"]
    after = [m for m in data["models"] if m["path"] == "after.py"][0]
    assert after["depth"]["status"] == "pass"  # the model after it was still checked (from the cache)


def test_timeout_option_and_text_output(tmp_path):
    project = Project(tmp_path)
    project.write([{"path": "slow.py", "depth": "1"}], models={"slow.py": hostile("import time\ntime.sleep(600)")})
    proc = _check(tmp_path, "--timeout", "2")
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[0] == ("slow.py: the analysis did not finish within 2 s and was stopped (raise "
                                           "[tool.depthscope] timeout or pass --timeout if the model needs longer)")
    assert "depthscope: error: 1 model could not be checked" in proc.stderr
    for bad in ("0", "-1", "nan", "inf"):
        proc = _check(tmp_path, "--timeout", bad)
        assert proc.returncode == 2 and "--timeout must be a positive number of seconds" in proc.stderr


@pytest.mark.parametrize("value", ["0", "-3", "true", '"10"', "inf", "nan"])
def test_bad_timeout_setting_is_exit_2(tmp_path, value):
    project = Project(tmp_path)
    project.write([{"path": "m.py", "depth": "1"}], models={"m.py": SCALE})
    text = (tmp_path / "pyproject.toml").read_text().replace("[tool.depthscope]\n", f"[tool.depthscope]\ntimeout = {value}\n")
    (tmp_path / "pyproject.toml").write_text(text)
    proc = _check(tmp_path)
    assert proc.returncode == 2 and "[tool.depthscope] timeout must be a positive number" in proc.stderr


def test_model_output_never_reaches_stdout(tmp_path):
    source = hostile("import os, sys\nprint('{\"ok\": true}')\nos.write(1, b'fd one\\n')\nsys.stdout.flush()")
    source = source.replace("        return x * 2", "        print('in forward')\n        return x * 2")
    project = Project(tmp_path)
    project.write([{"path": "noisy.py", "depth": "1"}], models={"noisy.py": source})
    proc = _check(tmp_path, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
    assert '{"ok": true}' in proc.stderr and "fd one" in proc.stderr and "in forward" in proc.stderr


@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P (the parent must not import the shadow itself)")
def test_project_modules_cannot_shadow_the_standard_library_in_the_worker(tmp_path):
    """Run from a directory holding a json.py, the analysis subprocess still imports the standard library's."""
    project = Project(tmp_path)
    project.write([{"path": "m.py", "depth": "1"}], models={"m.py": SCALE})
    (tmp_path / "json.py").write_text("raise SystemExit('shadowed json imported')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p and p != str(tmp_path)))
    proc = subprocess.run([sys.executable, "-P", "-m", "depthscope", "check"], capture_output=True, text=True,
                          timeout=120, env=env, cwd=str(tmp_path))
    assert "shadowed json imported" not in proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_debug_shows_the_model_traceback(tmp_path):
    project = Project(tmp_path)
    project.write([{"path": "m.py", "depth": "1"}], models={"m.py": hostile("import sys\nsys.exit(4)")})
    proc = _check(tmp_path, "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "sys.exit(4)" in proc.stderr


def _wait_for(path, seconds=90):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


def _gone(pid, seconds=10):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as f:
                if any(line.startswith("State:") and "Z" in line for line in f):
                    return True  # a zombie: it ended, nobody reaped it yet
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_an_interrupted_check_leaves_no_analysis_running(tmp_path, how):
    """Ctrl-C ends the check (click's "aborted", exit 2) and its analysis; a killed check's analysis ends with it."""
    import signal

    pidfile = tmp_path / "worker.pid"
    source = hostile(f"import os\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\nwhile True:\n    pass")
    Project(tmp_path).write([{"path": "spin.py", "depth": "1"}], models={"spin.py": source})
    command = [sys.executable, "-m", "depthscope", "check", "--config", str(tmp_path / "pyproject.toml")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=str(tmp_path))
    try:
        worker = _wait_for(pidfile)
        proc.send_signal(getattr(signal, how))
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    if how == "SIGINT":
        assert proc.returncode in (2, 130) and ("depthscope: aborted" in err or "interrupted" in err), err
    assert _gone(worker), f"the analysis process {worker} outlived the check"
