"""The real pre-commit: a repository whose commit swaps attention for a Python-loop RNN is stopped by the hook.

And the acceptance of issue 11: the README's `repo: local` hook blocks a commit of an O(n**2) custom op without a
cost rule, of a model that calls sys.exit(0), of a model whose architecture comes from an edited JSON file, and
a commit checked against a tampered cache entry.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from check_models import CONFIGURED, LOOP_RNN, PAIRWISE, RNN_DEPTH_MESSAGE, SCALE, SUM, attention, hostile
from conftest import ROOT

PRE_COMMIT = shutil.which("pre-commit", path=os.path.dirname(sys.executable)) or shutil.which("pre-commit")
DEPTHSCOPE = os.path.join(os.path.dirname(sys.executable), "depthscope")

pytestmark = pytest.mark.skipif(not PRE_COMMIT or not shutil.which("git") or not os.path.exists(DEPTHSCOPE),
                                reason="needs git, pre-commit and the depthscope script next to this Python")

PYPROJECT = '''[project]
name = "demo"

[[tool.depthscope.check]]
path = "models/tagger.py"
work = "n**2"
depth = "log(n)"
'''


def _readme_local_hook() -> str:
    """The README's `repo: local` hook, running this environment's depthscope (pre-commit installs nothing)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Complexity budgets in CI", 1)[1].split("\n## ", 1)[0]
    (snippet,) = [s for s in re.findall(r"```yaml\n(.*?)```", section, re.S) if "repo: local" in s]
    assert "entry: depthscope check\n" in snippet
    return snippet.replace("entry: depthscope check\n", f"entry: {shlex.quote(DEPTHSCOPE)} check\n")


CONFIG = _readme_local_hook()


def _run(args, cwd, env, check=True):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _environment(tmp_path):
    return dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"), GIT_CONFIG_NOSYSTEM="1",
                HOME=str(tmp_path), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
                GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")


GIT = ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]


def test_pre_commit_passes_then_blocks_the_rnn(tmp_path):
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    env = _environment(tmp_path)
    git = GIT
    (repo / "models" / "tagger.py").write_text(attention())
    (repo / "pyproject.toml").write_text(PYPROJECT)
    (repo / ".pre-commit-config.yaml").write_text(CONFIG)
    _run(git + ["init", "-q"], repo, env)
    _run(git + ["add", "-A"], repo, env)
    _run(git + ["commit", "-q", "-m", "attention tagger"], repo, env)

    passed = _run([PRE_COMMIT, "run", "--all-files"], repo, env, check=False)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"depthscope check\.+Passed", passed.stdout)
    assert (repo / ".depthscope_cache" / ".gitignore").exists()  # the cache ignores itself
    assert _run(git + ["status", "--porcelain"], repo, env).stdout == ""

    # With the hook installed, the commit that swaps attention for a Python-loop RNN is refused...
    _run([PRE_COMMIT, "install"], repo, env)
    (repo / "models" / "tagger.py").write_text(LOOP_RNN)
    _run(git + ["add", "-A"], repo, env)
    refused = _run(git + ["commit", "-m", "rnn tagger"], repo, env, check=False)
    assert refused.returncode != 0
    assert f"models/tagger.py: {RNN_DEPTH_MESSAGE}" in refused.stdout + refused.stderr

    # ...and once it is committed anyway, `pre-commit run --all-files` fails with the same line.
    _run(git + ["commit", "-q", "--no-verify", "-m", "rnn tagger"], repo, env)
    failed = _run([PRE_COMMIT, "run", "--all-files"], repo, env, check=False)
    assert failed.returncode == 1
    assert re.search(r"depthscope check\.+Failed", failed.stdout)
    assert f"models/tagger.py: {RNN_DEPTH_MESSAGE}" in failed.stdout.splitlines()


def test_manifest_is_valid():
    proc = subprocess.run([PRE_COMMIT, "validate-manifest", os.path.join(ROOT, ".pre-commit-hooks.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(ROOT, ".pre-commit-hooks.yaml")) as f:
        assert "- id: depthscope-check" in f.read()


def test_readme_snippet_is_a_valid_pre_commit_config(tmp_path):
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Complexity budgets in CI", 1)[1].split("\n## ", 1)[0]
    snippets = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert snippets and any("id: depthscope-check" in s for s in snippets)
    for i, snippet in enumerate(snippets):
        path = tmp_path / f"config{i}.yaml"
        path.write_text(snippet)
        proc = subprocess.run([PRE_COMMIT, "validate-config", str(path)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, snippet + proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# Acceptance of issue 11: each of these commits is refused by the README's local hook


def _repo(tmp_path, entries, files):
    """A git repository with the hook installed and `files`, nothing committed yet."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = _environment(tmp_path)  # (HOME is tmp_path: the cache key is created in tmp_path/.cache/depthscope)
    lines = ["[project]", 'name = "demo"']
    for entry in entries:
        lines += ["", "[[tool.depthscope.check]]"] + [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
    files = {"pyproject.toml": "\n".join(lines) + "\n", ".pre-commit-config.yaml": CONFIG, **files}
    for name, text in files.items():
        (repo / name).write_text(text)
    _run(GIT + ["init", "-q"], repo, env)
    _run([PRE_COMMIT, "install"], repo, env)
    return repo, env


def _commit(repo, env, message):
    _run(GIT + ["add", "-A"], repo, env)
    return _run(GIT + ["commit", "-q", "-m", message], repo, env, check=False)


def test_hook_blocks_an_unmodeled_quadratic_custom_op(tmp_path):
    repo, env = _repo(tmp_path, [{"path": "pairwise.py", "work": "b*n", "depth": "1"}], {"pairwise.py": PAIRWISE})
    refused = _commit(repo, env, "pairwise")
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert "pairwise.py: 1 op has no cost rule" in refused.stdout + refused.stderr
    assert _run(GIT + ["rev-parse", "--verify", "-q", "HEAD"], repo, env, check=False).returncode != 0


def test_hook_blocks_a_model_that_calls_sys_exit(tmp_path):
    repo, env = _repo(tmp_path, [{"path": "quits.py", "depth": "1"}], {"quits.py": hostile("import sys\nsys.exit(0)")})
    refused = _commit(repo, env, "quits")
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert "quits.py:2: the model's code called sys.exit(0)" in refused.stdout + refused.stderr


def test_hook_blocks_an_architecture_edited_in_a_json_file(tmp_path):
    repo, env = _repo(tmp_path, [{"path": "configured.py", "depth": "1"}],
                      {"configured.py": CONFIGURED, "arch.json": json.dumps({"arch": "scale"})})
    passed = _commit(repo, env, "scale")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    (repo / "arch.json").write_text(json.dumps({"arch": "sum"}))  # only the JSON file changes
    refused = _commit(repo, env, "sum")
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert "configured.py: depth O(log(n)) exceeds budget O(1)" in refused.stdout + refused.stderr


def test_hook_blocks_a_commit_checked_against_a_tampered_cache_entry(tmp_path):
    repo, env = _repo(tmp_path, [{"path": "scale.py", "depth": "1"}, {"path": "sum.py", "depth": "1"}],
                      {"scale.py": SCALE, "sum.py": SUM})
    failed = _run([PRE_COMMIT, "run", "--all-files"], repo, env, check=False)
    assert failed.returncode == 1 and "sum.py: depth O(log(n)) exceeds budget O(1)" in failed.stdout
    entries = {}
    for path in (repo / ".depthscope_cache").glob("*.json"):
        entries[json.loads(path.read_text())["summary"]["depth"]["class"]] = path
    # the failing model's entry now holds the passing model's (internally consistent) summary
    forged = json.loads(entries["log(n)"].read_text())
    forged["summary"] = json.loads(entries["1"].read_text())["summary"]
    entries["log(n)"].write_text(json.dumps(forged))
    refused = _commit(repo, env, "models")
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert "sum.py: depth O(log(n)) exceeds budget O(1)" in refused.stdout + refused.stderr
