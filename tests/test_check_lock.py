"""The lock file and the files `depthscope check` writes (issue 11, items 4, 5 and 14).

A lock is not trusted (its readable class must agree with its terms; malformed, deeply nested or huge locks
are exit 2, which --update replaces); concurrent `check --update` runs keep each other's entries; written
files keep the umask's mode; a lock that cannot be written and a pyproject.toml that is not UTF-8 are exit 2.
"""

import json
import os
import stat
import subprocess
import sys
import threading

import pytest

from check_models import MLP, SCALE, SUM, HELPERS, Project

KEY_ENV = "DEPTHSCOPE_CACHE_KEY_FILE"


@pytest.fixture(autouse=True)
def cache_key(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(KEY_ENV, str(tmp_path_factory.getbasetemp() / "depthscope-test-key"))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("lock_cache")


@pytest.fixture
def project(tmp_path, shared_cache):
    return Project(tmp_path, shared_cache).write([{"path": "scale.py"}, {"path": "sum.py"}],
                                                 models={"scale.py": SCALE, "sum.py": SUM})


def _lock(project, text):
    (project.root / "depthscope.lock.json").write_text(text)


def _good_lock(project, capsys):
    assert project.run("--update", capsys=capsys)[0] == 0
    return json.loads((project.root / "depthscope.lock.json").read_text())


# ---------------------------------------------------------------------------------------------
# The lock is read without trusting it


def test_a_class_that_disagrees_with_its_terms_is_exit_2(project, capsys):
    lock = _good_lock(project, capsys)
    lock["models"]["sum.py"]["depth"]["class"] = "1"  # the readable class says O(1), the terms log(n)
    _lock(project, json.dumps(lock))
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "sum.py: depth: \"class\" says '1' but its terms say 'log(n)'" in err
    lock["models"]["sum.py"]["depth"].update({"class": "log(n)", "terms": [{}]})  # and the other way round
    _lock(project, json.dumps(lock))
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and "\"class\" says 'log(n)' but its terms say '1'" in err
    lock["models"]["sum.py"]["depth"].update({"class": "log(n)", "terms": [{"n": [0, 1]}]})
    lock["models"]["sum.py"]["work"]["class"] = "n * 1"  # the same class written differently is fine
    _lock(project, json.dumps(lock))
    assert project.run(capsys=capsys)[0] == 0


@pytest.mark.parametrize("text, fragment", [
    ("[" * 100_000, "nested too deeply"),
    ('{"models": {"a": ' * 50_000 + "{}" + "}" * 100_000, "nested too deeply"),
    ('{"format": 1, "models": {}, "models": {}}', "appears twice"),
    ('{"format": 1, "models": {"scale.py": NaN}}', "NaN is not a JSON number"),
    (b"\xff\xfe{}".decode("latin-1"), "not valid JSON"),
    ('{"format": true, "models": {}}', "lock format"),
    ('{"models": {"scale.py": {"engine": 3, "work": {}, "depth": {}}}}', "\"engine\" must be a string"),
    ('{"models": {"scale.py": {"work": {"formula": "n", "terms": []}, "depth": {}}}}', "needs \"class\""),
])
def test_malformed_locks_are_exit_2_and_update_replaces_them(project, capsys, text, fragment):
    _lock(project, text)
    (project.root / "depthscope.lock.json").write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err[:500]
    code, out, err = project.run("--update", capsys=capsys)
    assert code == 0 and "--update replaces it" in err
    assert set(json.loads((project.root / "depthscope.lock.json").read_text())["models"]) == {"scale.py", "sum.py"}


def test_a_huge_lock_is_exit_2(project, capsys):
    (project.root / "depthscope.lock.json").write_text('{"models": {}, "pad": "' + "x" * (17 << 20) + '"}')
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and "larger than 16 MiB" in err


def test_a_lock_that_is_not_a_regular_file(project, capsys):
    os.mkfifo(project.root / "depthscope.lock.json")  # reading a FIFO would block forever
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and "not a regular file" in err
    os.unlink(project.root / "depthscope.lock.json")
    os.mkdir(project.root / "depthscope.lock.json")
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and "not a regular file" in err
    code, out, err = project.run("--update", capsys=capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith("depthscope: error: depthscope.lock.json: cannot write")


@pytest.mark.parametrize("lock", ["missing/dir/lock.json", "scale.py/lock.json"])
def test_a_lock_path_that_cannot_be_written_is_exit_2(project, capsys, lock):
    code, out, err = project.run("--update", "--lock", lock, capsys=capsys)
    assert code == 2, (out, err)
    assert err.strip().splitlines()[-1].startswith(f"depthscope: error: {lock}: cannot write: ")
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_lock_directory_is_exit_2(project, capsys):
    (project.root / "ro").mkdir()
    os.chmod(project.root / "ro", 0o555)
    try:
        code, out, err = project.run("--update", "--lock", "ro/lock.json", capsys=capsys)
    finally:
        os.chmod(project.root / "ro", 0o755)
    assert code == 2 and "ro/lock.json: cannot write: Permission denied" in err


def test_non_utf8_pyproject_is_exit_2(project, capsys):
    (project.root / "pyproject.toml").write_bytes(b'[tool.depthscope]\nlock = "caf\xe9.json"\n')
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and "not valid UTF-8" in err and len(err.strip().splitlines()) == 1
    (project.root / "pyproject.toml").write_text("[tool.depthscope]\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and "pyproject.toml" in err


# ---------------------------------------------------------------------------------------------
# Concurrent updates, atomic writes, file modes


def _check(root, *args):
    command = [sys.executable, "-m", "depthscope", "check", "--config", str(root / "pyproject.toml"), *args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(root))


def test_concurrent_updates_of_different_models_keep_both_entries(tmp_path):
    """Two real processes, each analyzing its model (so both read the lock long before either writes it)."""
    project = Project(tmp_path).write([{"path": "scale.py"}, {"path": "mlp.py"}],
                                      models={"scale.py": SCALE, "mlp.py": MLP, "helpers.py": HELPERS})
    procs = [_check(tmp_path, "--update", str(tmp_path / name)) for name in ("scale.py", "mlp.py")]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, out + err
        assert "wrote depthscope.lock.json" in out
    assert set(json.loads((tmp_path / "depthscope.lock.json").read_text())["models"]) == {"scale.py", "mlp.py"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".depthscope_cache"]


def test_many_concurrent_merges_lose_nothing(tmp_path):
    from depthscope.check.lock import read_lock, update_lock

    path = str(tmp_path / "depthscope.lock.json")
    entry = {"engine": "symbolic", "work": {"class": "n", "terms": [{"n": [1, 0]}], "formula": "n"},
             "depth": {"class": "1", "terms": [{}], "formula": "1"}}
    errors = []

    def writer(i):
        try:
            for j in range(15):
                update_lock(path, "lock", {f"m{i}_{j}.py": entry}, merge=True)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(read_lock(path, "lock")) == 90
    assert os.listdir(tmp_path) == ["depthscope.lock.json"]  # no guard or temporary file left


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_keep_the_umask_mode(project, capsys, tmp_path, mask):
    from depthscope.check.cache import Cache

    old = os.umask(mask)
    try:
        code, out, err = project.run("--update", capsys=capsys)
        cache = Cache(str(tmp_path / "fresh-cache"))
        cache.put("0" * 64, {"any": "summary"}, {"files": {}, "env": {}})
    finally:
        os.umask(old)
    assert code == 0
    assert stat.S_IMODE(os.stat(project.root / "depthscope.lock.json").st_mode) == 0o666 & ~mask
    (entry,) = (tmp_path / "fresh-cache").glob("*.json")
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o666 & ~mask


def test_an_existing_lock_keeps_its_mode(project, capsys):
    _good_lock(project, capsys)
    os.chmod(project.root / "depthscope.lock.json", 0o640)
    assert project.run("--update", capsys=capsys)[0] == 0
    assert stat.S_IMODE(os.stat(project.root / "depthscope.lock.json").st_mode) == 0o640


# ---------------------------------------------------------------------------------------------
# A hostile repository: symlinks, stale files, paths aimed outside the project


def test_a_symlinked_guard_file_creates_nothing_elsewhere(project, capsys, tmp_path):
    target = tmp_path.parent / f"{tmp_path.name}-planted"
    os.symlink(target, project.root / ".depthscope.lock.json.update")  # committed by someone else
    code, out, err = project.run("--update", capsys=capsys)
    assert code == 2 and "depthscope.lock.json: cannot write" in err
    assert not os.path.lexists(target)


def test_a_symlinked_lock_is_replaced_not_written_through(project, capsys, tmp_path):
    precious = tmp_path.parent / f"{tmp_path.name}-precious"
    precious.write_text("my notes\n")
    os.symlink(precious, project.root / "depthscope.lock.json")
    code, out, err = project.run("--update", capsys=capsys)
    assert code == 0 and "--update replaces it" in err
    assert precious.read_text() == "my notes\n"
    assert not os.path.islink(project.root / "depthscope.lock.json")


@pytest.mark.parametrize("lock", ["../elsewhere.json", "/tmp/depthscope-lock.json", "sub/../../x.json"])
def test_pyproject_cannot_aim_the_lock_outside_the_project(project, capsys, lock):
    project.write([{"path": "scale.py"}], tool={"lock": lock}, models={"scale.py": SCALE})
    code, out, err = project.run("--update", capsys=capsys)
    assert code == 2 and "is outside the project" in err and len(err.strip().splitlines()) == 1


def test_a_stale_guard_file_from_an_interrupted_update(project, capsys):
    (project.root / ".depthscope.lock.json.update").write_text("")  # left by a killed check --update
    assert project.run("--update", capsys=capsys)[0] == 0
    assert not (project.root / ".depthscope.lock.json.update").exists()


def test_a_cache_dir_that_is_a_file_only_costs_the_cache(project, capsys, tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    project.write([{"path": "scale.py", "depth": "1"}], tool={"cache-dir": str(tmp_path / "not-a-dir")},
                  models={"scale.py": SCALE})
    code, out, err = project.run(capsys=capsys)
    assert code == 0 and "warning: cannot write the cache" in err and "cache entry" not in err
