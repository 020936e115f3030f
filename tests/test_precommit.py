"""The real pre-commit: a repository whose commit swaps attention for a Python-loop RNN is stopped by the hook."""

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from check_models import LOOP_RNN, RNN_DEPTH_MESSAGE, attention
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

# A `repo: local` hook running this environment's depthscope, so pre-commit does not install torch again.
CONFIG = f'''repos:
  - repo: local
    hooks:
      - id: depthscope-check
        name: depthscope check
        entry: {shlex.quote(DEPTHSCOPE)} check
        language: system
        pass_filenames: false
        files: '(\\.py|pyproject\\.toml|depthscope\\.lock\\.json)$'
'''


def _run(args, cwd, env, check=True):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_pre_commit_passes_then_blocks_the_rnn(tmp_path):
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"), GIT_CONFIG_NOSYSTEM="1",
               HOME=str(tmp_path), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    git = ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]
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
