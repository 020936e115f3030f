"""`depthscope check` cannot be fooled: unmodeled ops and approximate results fail, the cache re-analyzes when
anything the model read changed, and cache entries are validated and signed (issue 11, items 1, 3 and 4)."""

import copy
import json
import os
import pathlib
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from check_models import CONFIGURED, PAIRWISE, SCALE, SUM, Project
from depthscope.check.cache import Cache
from depthscope.check.compare import ModelResult, evaluate
from depthscope.config import CheckEntry, load_config

KEY_ENV = "DEPTHSCOPE_CACHE_KEY_FILE"


def sign(key, data):
    from depthscope.check.signing import sign

    return sign(key, data)


def signing_key():
    from depthscope.check.signing import signing_key

    return signing_key()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("trust_cache")


@pytest.fixture(autouse=True)
def cache_key(tmp_path_factory, monkeypatch):
    """Every test signs with a key of the test session, never the user's."""
    path = tmp_path_factory.getbasetemp() / "depthscope-test-key"
    monkeypatch.setenv(KEY_ENV, str(path))
    return path


@pytest.fixture
def project(tmp_path, shared_cache):
    return Project(tmp_path, shared_cache)


# ---------------------------------------------------------------------------------------------
# 1. Unmodeled ops and approximate results fail the check, in every format


def test_unmodeled_custom_op_fails_in_every_format(project, capsys):
    project.write([{"path": "pairwise.py", "work": "b*n", "depth": "1"}], models={"pairwise.py": PAIRWISE})
    code, out, err = project.run(capsys=capsys)
    assert code == 1, (out, err)
    (line,) = [x for x in out.splitlines() if x.startswith("pairwise.py: ")]
    assert "1 op has no cost rule" in line and "gatetest.pairwise (x1)" in line
    assert 'allow-unmodeled = ["gatetest::pairwise"]' in line
    assert "1 with ops that have no cost rule" in out.splitlines()[-1]
    assert "check failed: 1 model with ops that have no cost rule" in err

    code, out, err = project.run("-v", capsys=capsys)
    assert code == 1 and "unmodeled gatetest.pairwise.default x1" in out.splitlines()[0]

    code, out, err = project.run("--format", "github", capsys=capsys)
    assert code == 1
    assert out.startswith("::error file=pairwise.py,title=op without a cost rule::pairwise.py: 1 op has no cost rule")

    code, out, err = project.run("--format", "json", capsys=capsys)
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and data["exit_code"] == 1
    assert data["models"][0]["unmodeled"] == [["gatetest.pairwise.default", 1]]
    assert [f["kind"] for f in data["findings"]] == ["unmodeled"]


@pytest.mark.parametrize("tool, entry", [
    ({"allow-unmodeled": ["gatetest::pairwise"]}, {}),
    ({}, {"allow-unmodeled": ["gatetest.pairwise"]}),
    ({"allow_unmodeled": ["gatetest.pairwise.default"]}, {}),
])
def test_allow_unmodeled_names_the_ops_that_may_pass(project, capsys, tool, entry):
    project.write([{"path": "pairwise.py", "work": "b*n", "depth": "1", **entry}], tool=tool,
                  models={"pairwise.py": PAIRWISE})
    code, out, err = project.run(capsys=capsys)
    assert code == 0, (out, err)
    assert "note: pairwise.py: allowed without a cost rule (counted as one step per output element): " \
           "gatetest.pairwise (x1)" in out  # still shown


def test_allowing_another_op_does_not_allow_this_one(project, capsys):
    project.write([{"path": "pairwise.py", "work": "b*n", "depth": "1", "allow-unmodeled": ["gatetest::other"]}],
                  tool={"allow-unmodeled": ["aten.gelu", "gatetest::pairwise.Tensor"]}, models={"pairwise.py": PAIRWISE})
    code, out, err = project.run(capsys=capsys)
    assert code == 1 and "1 op has no cost rule" in out


@pytest.mark.parametrize("value", ['"gatetest::pairwise"', '["pairwise"]', '[3]', '["a::b::c::d"]', '["aten. gelu"]'])
def test_malformed_allow_unmodeled_is_exit_2(project, capsys, value):
    project.write([{"path": "scale.py", "depth": "1"}], models={"scale.py": SCALE})
    text = (project.root / "pyproject.toml").read_text().replace("[tool.depthscope]\n",
                                                                  f"[tool.depthscope]\nallow-unmodeled = {value}\n")
    (project.root / "pyproject.toml").write_text(text)
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and "allow-unmodeled" in err and len(err.strip().splitlines()) == 1


def _summary(**changes):
    summary = {"format": 4, "model": "m", "engine": "fitted", "mode": "inference", "symbols": ["n"],
               "fallback": None, "exactness": "fitted-exact", "reasons": [], "unmodeled": [], "heldout_passed": True,
               "depth_groups": [], "work_ops": [], "bytes_ops": [],
               "work": {"class": "n", "terms": [{"n": [1, 0]}], "formula": "3*n"},
               "depth": {"class": "1", "terms": [{}], "formula": "2"},
               "bytes": {"class": "n", "terms": [{"n": [1, 0]}], "formula": "8*n"}}
    summary.update(changes)
    return summary


@pytest.mark.parametrize("changes", [
    {"heldout_passed": False},  # a fit that missed its held-out sizes, whatever the exactness says
    {"exactness": "approximate", "reasons": ["the fitted depth is not exact between the sweep points"]},
    {"exactness": "approximate", "reasons": []},
    {"exactness": "approximate", "reasons": ["1 node(s) have no cost rule: x.y x1", "floor() smoothed"],
     "unmodeled": [["x.y.default", 1]]},
])
def test_an_approximate_result_fails_unless_allowed(tmp_path, changes):
    (tmp_path / "m.py").write_text("")
    for allowed, kinds in ((False, {"approximate"}), (True, {"info"})):
        entry = CheckEntry("m.py", str(tmp_path / "m.py"), {}, allow_approximate=allowed,
                           allow_unmodeled=("x.y",))
        result = ModelResult(entry, "auto", summary=_summary(**changes))
        evaluate(result, None, "lock", update=True)
        found = {f.kind for f in result.findings if "approximate" in f.message}
        assert found == kinds, [f.message for f in result.findings]
        assert all(f.failing == (f.kind == "approximate") for f in result.findings)


def test_allowed_unmodeled_ops_alone_do_not_make_it_approximate(tmp_path):
    (tmp_path / "m.py").write_text("")
    entry = CheckEntry("m.py", str(tmp_path / "m.py"), {}, allow_unmodeled=("x.y",))
    summary = _summary(exactness="approximate", unmodeled=[["x.y.default", 2]],
                       reasons=["2 node(s) have no cost rule and were counted at the default: x.y.default x2"])
    result = ModelResult(entry, "auto", summary=summary)
    evaluate(result, None, "lock", update=True)
    assert [f.kind for f in result.findings] == ["info"]


def test_approximate_through_the_command_and_allow_approximate(valid, capsys):
    """A (signed) approximate result of the engine fails the check; allow-approximate = true lets it pass."""
    cache, key, data = _valid_entry(valid)
    project = Project(pathlib.Path(valid[3]), pathlib.Path(cache.directory))
    data["summary"].update(exactness="approximate", reasons=["the fit is not exact at n = 48"])
    _put_signed(cache, key, data)
    code, out, err = project.run("--format", "json", capsys=capsys)
    result = json.loads(out)
    assert code == 1 and result["models"][0]["cached"] is True
    assert [f["kind"] for f in result["findings"]] == ["approximate"]
    assert "the fit is not exact at n = 48" in result["findings"][0]["message"]
    project.write([{"path": "scale.py", "depth": "1", "allow-approximate": True}], models={"scale.py": SCALE})
    code, out, err = project.run(capsys=capsys)
    assert code == 0 and "note: scale.py: the analysis is approximate (allowed by allow-approximate)" in out
    project.write([{"path": "scale.py", "depth": "1"}], models={"scale.py": SCALE})


# ---------------------------------------------------------------------------------------------
# 3. The cache covers what the model reads: files it opens and environment variables


def test_cache_reanalyzes_when_the_json_file_the_model_reads_changes(tmp_path, capsys):
    project = Project(tmp_path)
    (project.root / "arch.json").write_text(json.dumps({"arch": "scale"}))
    project.write([{"path": "configured.py", "depth": "1"}], models={"configured.py": CONFIGURED})
    code, out, err = project.run("--format", "json", capsys=capsys)
    assert code == 0, err
    data = json.loads(out)  # the model's print and its write to fd 1 went to stderr
    assert data["models"][0]["cached"] is False
    assert "model stdout: hello" in err and "model fd 1: hello" in err
    assert project.run(capsys=capsys)[1].count("1 from cache") == 1

    (project.root / "arch.json").write_text(json.dumps({"arch": "sum"}))  # now depth O(log(n))
    code, out, err = project.run("-v", capsys=capsys)
    assert code == 1, out
    assert "re-analyzed: arch.json changed" in out
    assert "configured.py: depth O(log(n)) exceeds budget O(1)" in out


def test_cache_reanalyzes_when_an_environment_variable_the_model_reads_changes(project, capsys, monkeypatch):
    (project.root / "arch.json").write_text(json.dumps({"arch": "scale"}))
    project.write([{"path": "configured.py", "depth": "1"}], models={"configured.py": CONFIGURED})
    monkeypatch.delenv("GATE_WIDTH", raising=False)
    code, out, err = project.run("--format", "json", capsys=capsys)
    first = json.loads(out)["models"][0]
    monkeypatch.setenv("GATE_WIDTH", "6")
    code, out, err = project.run("--format", "json", capsys=capsys)
    second = json.loads(out)["models"][0]
    assert code == 0 and second["cached"] is False and second["cache_miss"] == "$GATE_WIDTH changed"
    assert first["depth"]["formula"] == second["depth"]["formula"]
    code, out, err = project.run("--format", "json", capsys=capsys)
    assert json.loads(out)["models"][0]["cached"] is True


def test_cache_key_names_the_model_file(tmp_path):
    """Identical model files in two directories may read different files: they do not share an entry."""
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "m.py").write_text(SCALE)
    cache = Cache(str(tmp_path / "cache"))
    keys = {cache.key(CheckEntry(f"{d}/m.py", str(tmp_path / d / "m.py")), "auto", str(tmp_path)) for d in "ab"}
    assert len(keys) == 2


# ---------------------------------------------------------------------------------------------
# 4. Cache entries are validated and signed


def test_edited_and_copied_cache_entries_are_reanalyzed(tmp_path, capsys):
    project = Project(tmp_path)  # a cache of its own: the entries are edited
    project.write([{"path": "scale.py", "depth": "1"}, {"path": "sum.py", "depth": "1"}],
                  models={"scale.py": SCALE, "sum.py": SUM})
    code, out, err = project.run(capsys=capsys)
    assert code == 1 and "sum.py: depth O(log(n)) exceeds budget O(1)" in out
    entries = {json.loads(p.read_text())["summary"]["depth"]["class"]: p for p in project.cache_entries()}
    passing, failing = json.loads(entries["1"].read_text()), json.loads(entries["log(n)"].read_text())

    # a hand edit of the failing entry's depth: internally consistent, but not signed
    edited = copy.deepcopy(failing)
    edited["summary"]["depth"] = passing["summary"]["depth"]
    edited["summary"]["depth_groups"] = passing["summary"]["depth_groups"]
    entries["log(n)"].write_text(json.dumps(edited))
    code, out, err = project.run(capsys=capsys)
    assert code == 1 and "sum.py: depth O(log(n)) exceeds budget O(1)" in out, (out, err)
    assert "sum.py: cache entry not signed with this machine's key" in err and "1 from cache" in out

    # the passing model's whole entry (its own valid signature) copied over the failing one's, key rewritten or not
    from depthscope.check.cache import Cache

    config = load_config(str(project.root / "pyproject.toml"))
    cache = Cache(str(project.root / ".depthscope_cache"))
    key = cache.key(config.entries[1], "auto", config.root)
    for forged, reason in ((dict(passing, key=failing["key"]), "not signed"), (passing, "made for other content")):
        entries["log(n)"].write_text(json.dumps(forged))
        summary, why, suspicious = cache.get(key, config.root)
        assert summary is None and suspicious and reason in why


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A project whose one model (SCALE) has a valid cache entry: (cache, key, entry without its mac, root)."""
    import depthscope.cli as cli

    root = tmp_path_factory.mktemp("valid")
    os.environ[KEY_ENV] = str(tmp_path_factory.getbasetemp() / "depthscope-test-key")
    try:
        Project(root, root / "cache").write([{"path": "scale.py", "depth": "1"}], models={"scale.py": SCALE})
        assert cli.main(["check", "--config", str(root / "pyproject.toml")]) == 0
        config = load_config(str(root / "pyproject.toml"))
        cache = Cache(str(root / "cache"))
        key = cache.key(config.entries[0], "auto", config.root)
        data = json.loads(open(cache._file(key)).read())
    finally:
        del os.environ[KEY_ENV]
    data.pop("mac")
    return cache, key, data, str(root)


def _valid_entry(valid):
    cache, key, data, root = valid
    _put_signed(cache, key, data)
    return cache, key, copy.deepcopy(data)


def _put_signed(cache, key, data):
    signed = dict(data, mac=sign(signing_key(), data))
    with open(cache._file(key), "w") as f:
        json.dump(signed, f)


def _mutations():
    yield "summary missing depth", lambda d: d["summary"].pop("depth")
    yield "summary missing work_ops", lambda d: d["summary"].pop("work_ops")
    yield "summary missing unmodeled", lambda d: d["summary"].pop("unmodeled")
    yield "no inputs", lambda d: d.pop("inputs")
    yield "depth class disagrees with terms", lambda d: d["summary"]["depth"].update({"class": "n"})
    yield "terms disagree with class", lambda d: d["summary"]["depth"].update({"terms": [{"n": [1, 0]}]})
    yield "terms not a list", lambda d: d["summary"]["work"].update({"terms": {"n": 1}})
    yield "exponent a float", lambda d: d["summary"]["work"].update({"terms": [{"n": [1.5, 0]}]})
    yield "engine unknown", lambda d: d["summary"].update({"engine": "magic"})
    yield "exactness unknown", lambda d: d["summary"].update({"exactness": "trust me"})
    yield "unmodeled not pairs", lambda d: d["summary"].update({"unmodeled": ["aten.x"]})
    yield "depth group without class", lambda d: d["summary"].update({"depth_groups": [{"module": "", "op": "x"}]})
    yield "formula a number", lambda d: d["summary"]["depth"].update({"formula": 2})
    yield "summary a list", lambda d: d.update({"summary": []})
    yield "inputs files not an object", lambda d: d["inputs"].update({"files": ["a"]})
    yield "inputs digest a number", lambda d: d["inputs"]["files"].update({"x.json": 3})


@pytest.mark.parametrize("name, mutate", list(_mutations()), ids=[n for n, _ in _mutations()])
def test_signed_but_malformed_entries_are_misses(valid, name, mutate):
    """Even an entry signed with the key (a bug, an older format) is validated before it is used."""
    cache, key, data = _valid_entry(valid)
    assert cache.get(key, valid[3])[0] is not None
    mutate(data)
    _put_signed(cache, key, data)
    summary, why, suspicious = cache.get(key, valid[3])
    assert summary is None and suspicious and why, why


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_cache_entries_never_crash(valid, data):
    cache, key, entry = _valid_entry(valid)
    value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                      max_size=3), max_leaves=8)
    for _ in range(data.draw(st.integers(1, 4))):
        target = entry
        path = data.draw(st.lists(st.sampled_from(["summary", "work", "depth", "terms", "class", "inputs", "files",
                                                   "depth_groups", "0", "n"]), max_size=3))
        for part in path:
            if isinstance(target, dict) and part in target and isinstance(target[part], (dict, list)):
                target = target[part]
            elif isinstance(target, list) and target and part == "0":
                target = target[0]
        if isinstance(target, dict) and target:
            k = data.draw(st.sampled_from(sorted(target)))
            if data.draw(st.booleans()):
                del target[k]
            else:
                target[k] = data.draw(value)
        elif isinstance(target, list) and target:
            target[0] = data.draw(value)
    _put_signed(cache, key, entry)
    summary, why, suspicious = cache.get(key, valid[3])
    assert summary is None or why is None


@pytest.mark.parametrize("content", ["[" * 100_000, "", "\xff\xfe", '{"format": 3}', "null", "[]",
                                     '{"format": 3, "key": 1, "summary": 2, "inputs": 3, "mac": 4}'])
def test_unreadable_entries_are_misses(valid, content):
    cache, key, data = _valid_entry(valid)
    with open(cache._file(key), "w", encoding="latin-1") as f:
        f.write(content)
    summary, why, _ = cache.get(key, valid[3])
    assert summary is None


def test_entries_that_are_not_regular_files_are_misses(valid):
    cache, key, data = _valid_entry(valid)
    os.unlink(cache._file(key))
    os.mkfifo(cache._file(key))  # opening a FIFO for reading would block: it is never waited on
    try:
        assert cache.get(key, valid[3])[0] is None
    finally:
        os.unlink(cache._file(key))
    os.mkdir(cache._file(key))
    try:
        assert cache.get(key, valid[3])[0] is None
    finally:
        os.rmdir(cache._file(key))


def test_the_key_lives_outside_the_repository(tmp_path, monkeypatch, capsys):
    from depthscope.check.signing import key_path

    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = key_path()
    assert path == str(tmp_path / "xdg" / "depthscope" / "key")
    key = signing_key()
    assert len(key) >= 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert signing_key() == key  # created once
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert key_path() == str(tmp_path / "home" / ".cache" / "depthscope" / "key")


def test_another_key_rejects_the_entries(valid, monkeypatch, tmp_path):
    cache, key, data = _valid_entry(valid)
    assert cache.get(key, valid[3])[0] is not None
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "other-key"))
    summary, why, suspicious = Cache(cache.directory).get(key, valid[3])
    assert summary is None and "not signed with this machine's key" in why


def test_no_usable_key_turns_the_cache_off(project, capsys, monkeypatch, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "file" / "key"))  # its directory cannot be created
    project.write([{"path": "scale.py", "depth": "1"}], models={"scale.py": SCALE})
    code, out, err = project.run(capsys=capsys)
    assert code == 0 and "0 from cache" in out
    assert "warning: the analysis cache is off: no key to sign it" in err


def test_a_key_inside_the_project_is_warned_about(project, capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, str(project.root / "ci" / "key"))
    project.write([{"path": "scale.py", "depth": "1"}], models={"scale.py": SCALE})
    code, out, err = project.run(capsys=capsys)
    assert code == 0 and "warning: the cache key ci/key is inside the project" in err


@pytest.mark.parametrize("entry, fragment", [
    ({"allow-unmodeled": "gatetest::pairwise"}, "allow-unmodeled must be a list"),
    ({"allow-unmodeled": ["*"]}, "is not an op name"),
    ({"allow-approximate": 1}, "allow-approximate must be true or false"),
    ({"allow_approximate": True}, "unknown key allow_approximate"),
])
def test_malformed_per_model_settings_are_exit_2(project, capsys, entry, fragment):
    project.write([{"path": "scale.py", "depth": "1", **entry}], models={"scale.py": SCALE})
    code, out, err = project.run(capsys=capsys)
    assert code == 2 and fragment in err and "[[tool.depthscope.check]] #1" in err


@pytest.mark.parametrize("kind", ["fifo", "dir", "short"])
def test_an_unusable_key_file_is_no_key(tmp_path, monkeypatch, kind):
    from depthscope.check.signing import KeyUnavailable

    path = tmp_path / "key"
    if kind == "fifo":
        os.mkfifo(path)  # never blocks: it is not a regular file
    elif kind == "dir":
        path.mkdir()
    else:
        path.write_text("too short\n")
    monkeypatch.setenv(KEY_ENV, str(path))
    with pytest.raises(KeyUnavailable):
        signing_key()


def test_a_cache_entry_missing_keys_is_reanalyzed_through_the_command(valid, capsys):
    cache, key, data = _valid_entry(valid)
    del data["summary"]["work"], data["summary"]["depth_groups"]
    _put_signed(cache, key, data)
    project = Project(pathlib.Path(valid[3]), pathlib.Path(cache.directory))
    code, out, err = project.run("--format", "json", capsys=capsys)
    assert code == 0, (out, err)
    assert json.loads(out)["models"][0]["cached"] is False and "malformed cache entry" in err
    assert "internal error" not in out + err
