"""`depthscope check`: config errors (exit 2), budgets (0/1), the lock file, output formats and the cache."""

import json
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import depthscope.cli as cli
from check_models import HELPERS, LOOP_RNN, MLP, RNN_DEPTH_MESSAGE, attention
from depthscope.check.cache import Cache, import_closure
from depthscope.check.lock import read_lock
from depthscope.check.render import gh_data as _gh_data, gh_property as _gh_property
from depthscope.config import CheckEntry, cli_defaults, load_config
from depthscope.errors import InputError

MODELS = {"attn.py": attention(), "rnn.py": LOOP_RNN, "mlp.py": MLP, "helpers.py": HELPERS}


@pytest.fixture(autouse=True)
def cache_key(tmp_path_factory, monkeypatch):
    """Cache entries are signed with a key of the test session, never the user's (~/.cache/depthscope/key)."""
    monkeypatch.setenv("DEPTHSCOPE_CACHE_KEY_FILE", str(tmp_path_factory.getbasetemp() / "depthscope-test-key"))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module: each distinct model is analyzed once, whichever test needs it first."""
    return str(tmp_path_factory.mktemp("depthscope_cache"))


@pytest.fixture
def project(tmp_path, shared_cache):
    """Write model files and a pyproject.toml with the given check entries; returns a runner."""

    class Project:
        root = tmp_path

        def write(self, entries=(), tool=None, models=None, cache=True):
            for name, source in (models or MODELS).items():
                (tmp_path / name).write_text(source)
            lines = ["[project]", 'name = "demo"', "", "[tool.depthscope]"]
            settings = {"cache-dir": shared_cache} if cache else {}
            settings.update(tool or {})
            lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
            for entry in entries:
                lines += ["", "[[tool.depthscope.check]]"] + [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
            (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n")
            return self

        def run(self, *args, capsys):
            code = cli.main(["check", "--config", str(tmp_path / "pyproject.toml"), *args])
            out, err = capsys.readouterr()
            return code, out, err

        def lock(self):
            return json.loads((tmp_path / "depthscope.lock.json").read_text())

    return Project()


# ---------------------------------------------------------------------------------------------
# Configuration and usage errors: exit 2 with one clear line


@pytest.mark.parametrize("pyproject, fragment", [
    ("[tool.depthscope\n", "invalid TOML"),
    ('[tool.depthscope.check]\npath = "attn.py"\n', "double brackets"),
    ('[tool.depthscope]\ncheck = "attn.py"\n', "array of tables"),
    ('[[tool.depthscope.check]]\nwork = "n"\n', "path = \"...\""),
    ('[[tool.depthscope.check]]\npath = "missing.py"\n', "no such model file"),
    ('[[tool.depthscope.check]]\npath = "attn.py"\nbudget = "n"\n', "unknown key budget"),
    ('[[tool.depthscope.check]]\npath = "attn.py"\ndepth = "n^2"\n', "#1 (attn.py): depth: budget 'n^2', column 2"),
    ('[[tool.depthscope.check]]\npath = "attn.py"\ndepth = "__import__(\'os\')"\n', "unexpected character"),
    ('[[tool.depthscope.check]]\npath = "attn.py"\nwork = 3\n', "must be a string"),
    ('[[tool.depthscope.check]]\npath = "attn.py"\nengine = "fast"\n', "engine = 'fast'"),
    ('[[tool.depthscope.check]]\npath = "attn.py"\nsymbolic = "yes"\n', "symbolic must be true or false"),
    ('[[tool.depthscope.check]]\npath = "attn.py"\nsymbolic = true\nengine = "fitted"\n', "contradicts"),
    ('[[tool.depthscope.check]]\npath = "attn.py"\ntrain = 1\n', "train must be true or false"),
    ('[[tool.depthscope.check]]\npath = "attn.py"\n[[tool.depthscope.check]]\npath = "./attn.py"\n',
     "already checked by entry #1"),
    ('[tool.depthscope]\nengine = "quick"\n', "engine = 'quick'"),
    ('[tool.depthscope]\nlock = 5\n', "lock must be a non-empty string"),
    ('[tool.depthscope]\n', "no models to check"),
])
def test_config_errors_exit_2(project, capsys, pyproject, fragment):
    project.write()
    (project.root / "pyproject.toml").write_text(pyproject)
    code, out, err = project.run(capsys=capsys)
    assert code == 2, (out, err)
    assert fragment in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_usage_errors_exit_2(project, capsys, tmp_path, monkeypatch):
    project.write([{"path": "attn.py"}])
    assert project.run("--format", "yaml", capsys=capsys)[0] == 2
    assert project.run("nope.py", capsys=capsys)[0] == 2
    assert cli.main(["check", "--config", str(tmp_path / "absent.toml")]) == 2
    monkeypatch.chdir(tmp_path / "..")  # no pyproject.toml here or above (tmp dirs), and no paths
    if not any(os.path.exists(os.path.join(p, "pyproject.toml")) for p in _parents(os.getcwd())):
        assert cli.main(["check"]) == 2
        assert "no models to check" in capsys.readouterr().err


def _parents(path):
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def test_malformed_lock_is_a_usage_error(project, capsys):
    project.write([{"path": "mlp.py"}])
    (project.root / "depthscope.lock.json").write_text('{"models": {"mlp.py": {"work": 3}}}')
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and "depthscope.lock.json: mlp.py" in err and "--update" in err
    (project.root / "depthscope.lock.json").write_text("not json")
    assert project.run(capsys=capsys)[0] == 2
    # --update replaces a broken lock
    code, out, err = project.run("--update", capsys=capsys)
    assert code == 0 and "--update replaces it" in err
    assert set(project.lock()["models"]) == {"mlp.py"}


def test_model_that_cannot_be_analyzed_is_exit_2(project, capsys):
    project.write([{"path": "broken.py", "depth": "1"}, {"path": "mlp.py", "depth": "1"}],
                  models={**MODELS, "broken.py": "import torch\ndef (:\n"})
    code, out, err = project.run(capsys=capsys)
    assert code == 2
    assert out.startswith("broken.py:2: syntax error")
    assert "depthscope check: 2 models, 1 with errors" in out  # the other model was still checked


def test_symbolic_true_rejects_the_fitted_fallback(project, capsys):
    project.write([{"path": "rnn.py", "depth": "n", "symbolic": True}])
    code, out, err = project.run(capsys=capsys)
    assert code == 2
    assert "rnn.py: symbolic = true, but" in out


# ---------------------------------------------------------------------------------------------
# Budgets


def test_within_budget_passes(project, capsys):
    project.write([{"path": "attn.py", "work": "n**2", "depth": "log(n)"},
                   {"path": "mlp.py", "work": "b", "depth": "1"}])
    code, out, err = project.run(capsys=capsys)
    assert code == 0, (out, err)
    assert out.strip().splitlines()[-1].startswith("depthscope check: 2 models, all pass")


def test_depth_breach_names_the_critical_path(project, capsys):
    project.write([{"path": "rnn.py", "depth": "log(n)", "work": "n"}])
    code, out, err = project.run(capsys=capsys)
    assert code == 1
    assert f"rnn.py: {RNN_DEPTH_MESSAGE}" in out.splitlines()
    assert "analyzed with the fitted engine" in err
    assert "depthscope: check failed: 1 budget breach" in err


def test_work_breach_names_the_heaviest_op(project, capsys):
    project.write([{"path": "attn.py", "work": "n*log(n)", "depth": "log(n)"}])
    code, out, err = project.run(capsys=capsys)
    assert code == 1
    line = out.splitlines()[0]
    assert line.startswith("attn.py: work O(n**2) exceeds budget O(n*log(n)); heaviest op aten.")
    assert " in encoder" in line


def test_a_size_missing_from_the_budget_is_a_breach(project, capsys):
    project.write([{"path": "mlp.py", "work": "n"}, {"path": "attn.py", "depth": "O(log(n) + b)"}])
    code, out, err = project.run(capsys=capsys)
    assert code == 1
    assert "mlp.py: work O(b) exceeds budget O(n); heaviest op aten.linear in fc" in out
    assert "(b is not in the budget, which treats it as constant)" in out
    assert "attn.py" not in out.split("depthscope check:")[0]  # a budget size the model lacks is fine


# ---------------------------------------------------------------------------------------------
# Lock file


def test_lock_update_then_regression_and_constant_factors(project, capsys):
    project.write([{"path": "attn.py"}, {"path": "mlp.py"}])
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and "attn.py: nothing to check against" in out  # no budget and no baseline yet

    code, out, err = project.run("--update", capsys=capsys)
    assert code == 0 and "wrote depthscope.lock.json" in out
    lock = project.lock()
    assert lock["format"] == 1
    attn = lock["models"]["attn.py"]
    assert attn["engine"] == "symbolic"
    assert attn["depth"]["class"] == "log(n)" and attn["depth"]["terms"] == [{"n": [0, 1]}]
    assert attn["work"]["class"] == "n**2" and "n**2" in attn["work"]["formula"]
    assert read_lock(str(project.root / "depthscope.lock.json"), "lock")["mlp.py"]["work"]["parsed"].text() == "b"

    assert project.run(capsys=capsys)[0] == 0

    # a constant-factor change (a wider model) is information, not a failure
    (project.root / "attn.py").write_text(attention(16))
    code, out, err = project.run(capsys=capsys)
    assert code == 0, out
    assert "note: attn.py: work changed by a constant factor within O(n**2): " in out
    assert "(run depthscope check --update to record it)" in out

    # a class increase fails
    (project.root / "attn.py").write_text(LOOP_RNN)
    code, out, err = project.run(capsys=capsys)
    assert code == 1
    assert ("attn.py: depth O(n) exceeds locked O(log(n)) in depthscope.lock.json; critical path through "
            "encoder.rec (aten.linear)") in out
    assert "note: attn.py: work improved from O(n**2)" in out
    assert "1 regression against depthscope.lock.json" in err

    # a budget takes precedence over the lock for its metric
    project.write([{"path": "attn.py", "depth": "n"}, {"path": "mlp.py"}], models={"attn.py": LOOP_RNN})
    code, out, err = project.run(capsys=capsys)
    assert code == 0
    assert "note: attn.py: depth grew from O(log(n)) in depthscope.lock.json to O(n), within its budget" in out


def test_update_with_paths_merges_into_the_lock(project, capsys):
    project.write([{"path": "attn.py"}, {"path": "mlp.py"}])
    assert project.run("--update", capsys=capsys)[0] == 0
    before = project.lock()["models"]["attn.py"]
    (project.root / "mlp.py").write_text(MLP.replace("nn.Linear(8, WIDTH)", "nn.Linear(8, 2 * WIDTH)")
                                         .replace("nn.Linear(WIDTH, 8)", "nn.Linear(2 * WIDTH, 8)"))
    assert project.run("--update", str(project.root / "mlp.py"), capsys=capsys)[0] == 0
    models = project.lock()["models"]
    assert models["attn.py"] == before and set(models) == {"attn.py", "mlp.py"}


def test_lock_and_cache_locations_come_from_pyproject(project, capsys, tmp_path):
    project.write([{"path": "mlp.py"}], tool={"lock": "ci/budget.lock.json"}, cache=False)
    (tmp_path / "ci").mkdir()
    assert project.run("--update", capsys=capsys)[0] == 0
    assert (tmp_path / "ci" / "budget.lock.json").exists()
    assert (tmp_path / ".depthscope_cache" / ".gitignore").read_text().splitlines()[-1] == "*"
    defaults = cli_defaults(load_config(str(tmp_path / "pyproject.toml")))
    assert defaults["check"]["lock"] == "ci/budget.lock.json" and defaults["analyze"]["engine"] == "auto"


# ---------------------------------------------------------------------------------------------
# Output formats


def test_json_format(project, capsys):
    project.write([{"path": "rnn.py", "depth": "log(n)"}, {"path": "attn.py", "depth": "log(n)", "work": "n**2"}])
    code, out, err = project.run("--format", "json", capsys=capsys)
    assert code == 1
    data = json.loads(out)  # stdout is pure JSON; notes go to stderr
    assert data["ok"] is False and data["exit_code"] == 1
    rnn, attn = data["models"]
    assert rnn["path"] == "rnn.py" and rnn["engine"] == "fitted" and "fallback" in rnn
    assert rnn["depth"] == {"class": "n", "formula": rnn["depth"]["formula"], "budget": "log(n)", "status": "breach"}
    assert attn["work"]["status"] == "pass" and attn["depth"]["class"] == "log(n)"
    (finding,) = data["findings"]
    assert finding["kind"] == "breach" and finding["metric"] == "depth" and finding["source"] == "budget"
    assert finding["found"] == "n" and finding["limit"] == "log(n)"
    assert finding["cause"] == "critical path through encoder.rec (aten.linear)"


def test_github_format(project, capsys):
    project.write([{"path": "rnn.py", "depth": "log(n)"}])
    code, out, err = project.run("--format", "github", capsys=capsys)
    assert code == 1
    first = out.splitlines()[0]
    assert first == f"::error file=rnn.py,title=complexity budget exceeded::rnn.py: {RNN_DEPTH_MESSAGE}"


def test_github_paths_are_relative_to_the_workspace(project, capsys, monkeypatch):
    project.write([{"path": "rnn.py", "depth": "log(n)"}])
    monkeypatch.setenv("GITHUB_WORKSPACE", str(project.root.parent))
    code, out, err = project.run("--format", "github", capsys=capsys)
    assert out.startswith(f"::error file={project.root.name}/rnn.py,title=")


def test_github_escaping():
    assert _gh_data("50%\nnext") == "50%25%0Anext"
    assert _gh_property("a,b:c") == "a%2Cb%3Ac"


def test_verbose_lists_every_model(project, capsys):
    project.write([{"path": "attn.py", "depth": "log(n)"}, {"path": "mlp.py", "work": "b"}])
    code, out, err = project.run("-v", capsys=capsys)
    assert code == 0
    assert "attn.py: symbolic engine, work O(n**2), depth O(log(n)) (budget O(log(n)))" in out
    assert "mlp.py: symbolic engine, work O(b) (budget O(b)), depth O(1)" in out


# ---------------------------------------------------------------------------------------------
# Cache


def test_cache_is_keyed_by_content_imports_and_versions(tmp_path):
    for name, source in MODELS.items():
        (tmp_path / name).write_text(source)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "layers.py").write_text("from .consts import K\n")
    (tmp_path / "pkg" / "consts.py").write_text("K = 1\n")
    (tmp_path / "uses_pkg.py").write_text("import torch\nfrom pkg.layers import K\nimport helpers, os\n")
    closure = [os.path.relpath(p, tmp_path) for p in import_closure(str(tmp_path / "uses_pkg.py"), str(tmp_path))]
    assert closure == ["helpers.py", "pkg/__init__.py", "pkg/consts.py", "pkg/layers.py", "uses_pkg.py"]

    cache = Cache(str(tmp_path / "cache"))
    entry = CheckEntry("mlp.py", str(tmp_path / "mlp.py"))
    key = cache.key(entry, "auto", str(tmp_path))
    assert cache.key(entry, "auto", str(tmp_path)) == key
    assert cache.key(entry, "fitted", str(tmp_path)) != key
    (tmp_path / "helpers.py").write_text("WIDTH = 32\n")  # an in-repo import changed
    assert cache.key(entry, "auto", str(tmp_path)) != key
    (tmp_path / "helpers.py").write_text(HELPERS)
    assert cache.key(entry, "auto", str(tmp_path)) == key
    nested = CheckEntry("uses_pkg.py", str(tmp_path / "uses_pkg.py"))
    before = cache.key(nested, "auto", str(tmp_path))
    (tmp_path / "pkg" / "consts.py").write_text("K = 2\n")  # two imports away
    assert cache.key(nested, "auto", str(tmp_path)) != before


def test_cache_hits_and_invalidation(project, capsys):
    project.write([{"path": "mlp.py", "work": "b"}], cache=False)
    code, out, err = project.run("--format", "json", capsys=capsys)
    assert code == 0 and json.loads(out)["models"][0]["cached"] is False
    code, out, err = project.run("--format", "json", capsys=capsys)
    assert json.loads(out)["models"][0]["cached"] is True
    (project.root / "helpers.py").write_text("WIDTH = 24\n")
    code, out, err = project.run("--format", "json", capsys=capsys)
    assert json.loads(out)["models"][0]["cached"] is False


def test_corrupt_entries_and_no_cache_re_analyze(project, capsys):
    project.write([{"path": "mlp.py", "work": "b"}], cache=False)
    assert project.run(capsys=capsys)[0] == 0
    # a corrupt entry is re-analyzed, not trusted
    for f in (project.root / ".depthscope_cache").glob("*.json"):
        f.write_text("{")
    code, out, err = project.run("--format", "json", capsys=capsys)
    assert code == 0 and json.loads(out)["models"][0]["cached"] is False
    code, out, err = project.run("--no-cache", "--format", "json", capsys=capsys)
    assert json.loads(out)["models"][0]["cached"] is False


def _depthscope_command():
    script = os.path.join(os.path.dirname(sys.executable), "depthscope")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "depthscope"]


def test_warm_check_of_three_models_is_fast(project, capsys):
    project.write([{"path": "attn.py", "work": "n**2", "depth": "log(n)"}, {"path": "mlp.py", "work": "b"},
                   {"path": "rnn.py", "work": "n", "depth": "n"}])
    command = _depthscope_command() + ["check", "--config", str(project.root / "pyproject.toml")]
    for attempt in range(3):  # (an edit to depthscope's source between runs would re-analyze: warm up again)
        assert project.run(capsys=capsys)[0] == 0  # warms the cache (shared with the other tests)
        times, procs = [], []
        for _ in range(3):
            start = time.perf_counter()
            procs.append(subprocess.run(command, capture_output=True, text=True, timeout=120))
            times.append(time.perf_counter() - start)
        for proc in procs:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        if all("3 models, all pass (3 from cache" in proc.stdout for proc in procs):
            break
    else:
        pytest.fail("the cache never served all three models: " + procs[-1].stdout)
    print(f"warm depthscope check of 3 models: {min(times):.2f} s (best of 3; {', '.join(f'{t:.2f}' for t in times)})")
    assert min(times) < 2.0

    # the warm path never imports torch
    probe = ("import sys; from depthscope.cli import main; "
             f"rc = main(['check', '--config', {str(project.root / 'pyproject.toml')!r}]); "
             "print('RESULT', rc, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "RESULT 0 False" in proc.stdout, proc.stdout + proc.stderr


def test_check_paths_filter_and_unconfigured_paths(project, capsys):
    project.write([{"path": "attn.py", "depth": "log(n)"}, {"path": "rnn.py", "depth": "log(n)"}])
    code, out, err = project.run(str(project.root / "attn.py"), capsys=capsys)
    assert code == 0 and "1 model, all pass" in out
    code, out, err = project.run(str(project.root / "mlp.py"), capsys=capsys)
    assert code == 2 and "mlp.py: nothing to check against" in out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=60))
def test_fuzz_budget_text_through_the_cli(project, capsys, text):
    """Whatever a budget says, the command answers 0, 1 or 2 with its own message, never a traceback."""
    project.write([{"path": "mlp.py", "work": text}])
    code, out, err = project.run(capsys=capsys)
    assert code in (0, 1, 2), (text, out, err)
    assert "Traceback" not in err and "internal error" not in err + out
    if code == 2:
        assert "[[tool.depthscope.check]] #1 (mlp.py): work:" in err or "invalid TOML" in err


def test_config_loader_directly(tmp_path):
    (tmp_path / "m.py").write_text("")
    (tmp_path / "pyproject.toml").write_text('[tool.depthscope]\nengine = "fitted"\n'
                                             '[[tool.depthscope.check]]\npath = "m.py"\nwork = "b*n**2*d"\n'
                                             'symbolic = true\n[[tool.depthscope.check]]\npath = "m.py "\n'
                                             'depth = "log(n)"\n')
    with pytest.raises(InputError, match="no such model file"):
        load_config(str(tmp_path / "pyproject.toml"))
    (tmp_path / "pyproject.toml").write_text('[tool.depthscope]\nengine = "fitted"\n'
                                             '[[tool.depthscope.check]]\npath = "m.py"\nwork = "b*n**2*d"\n'
                                             'symbolic = true\n')
    config = load_config(start=str(tmp_path))
    (entry,) = config.entries
    assert entry.engine == "symbolic" and entry.budgets["work"].text() == "b*d*n**2" and "depth" not in entry.budgets
    assert config.settings["engine"] == "fitted" and config.root == str(tmp_path)
