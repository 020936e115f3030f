"""What a model reads is recorded, and any change to it re-analyzes (issue 11, item 3).

The recorder (depthscope/check/record.py) patches os.environ, os.stat and installs an audit hook for good, so
its unit tests run in a subprocess of their own (without torch: the recorder needs none).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from check_models import SCALE, Project

KEY_ENV = "DEPTHSCOPE_CACHE_KEY_FILE"


@pytest.fixture(autouse=True)
def cache_key(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(KEY_ENV, str(tmp_path_factory.getbasetemp() / "depthscope-test-key"))


def _record(tmp_path, body: str, env=None, cwd=None):
    """Run `body` (the model's reads) under a Recorder rooted at tmp_path/project; return its inputs and whether
    `changed_input` sees a change after `tmp_path/after.py` (if any) ran."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (tmp_path / "lib").mkdir(exist_ok=True)
    script = f"""
import json, os, sys
sys.path.insert(0, {str(tmp_path / 'lib')!r})
from depthscope.check.record import Recorder, changed_input
recorder = Recorder({str(tmp_path / 'lib')!r}, {str(project)!r})  # lib/ stands for an installed library
code = compile(open({str(tmp_path / 'body.py')!r}).read(), {str(project / 'model.py')!r}, "exec")
recorder.start()
exec(code)
recorder.stop()
inputs = recorder.inputs({str(project)!r})
print("INPUTS " + json.dumps(inputs))
"""
    (tmp_path / "body.py").write_text(textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), **(env or {}))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env=env, cwd=str(cwd or project))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("INPUTS ")]
    return json.loads(line[len("INPUTS "):])


def _changed(inputs, root, env=None):
    script = ("import json, os, sys\nfrom depthscope.check.record import changed_input\n"
              "print(changed_input(json.loads(sys.argv[1]), sys.argv[2]))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), **(env or {}))
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(inputs), str(root)], capture_output=True,
                          text=True, timeout=60, env=env, cwd=str(root))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


READS = [  # (body, file that must be recorded)
    ("import json\njson.load(open('a.json'))", "a.json"),
    ("import pathlib\npathlib.Path('a.json').read_text()", "a.json"),
    ("import os\nos.read(os.open(os.path.join(os.getcwd(), 'a.json'), os.O_RDONLY), 10)", "a.json"),
    ("import io\nio.open('a.json', 'rb').read()", "a.json"),
    ("open('a.json', 'r+').read()", "a.json"),
    ("try:\n    open('absent.yaml')\nexcept FileNotFoundError:\n    pass", "absent.yaml"),
    ("import os\nos.path.exists('flag')", "flag"),
    ("import pathlib\npathlib.Path('a.json').is_file()", "a.json"),
    ("import json, lib_reader\nlib_reader.load(os.path.abspath('a.json'))", "a.json"),  # a library opening a file
]


@pytest.mark.parametrize("body, name", READS, ids=[b.splitlines()[-1][:40] for b, _ in READS])
def test_every_way_of_reading_a_file_is_recorded(tmp_path, body, name):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "lib_reader.py").write_text("def load(path):\n    return open(path).read()\n")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "a.json").write_text("{}")
    inputs = _record(tmp_path, "import os\n" + body)
    assert name in inputs["files"], inputs
    root = tmp_path / "project"
    assert _changed(inputs, root) == "None"
    target = root / name
    target.write_text("[1]" if target.exists() else "{}")  # edit it, or create what was absent
    assert _changed(inputs, root) == f"{name} changed"


@pytest.mark.parametrize("body", [
    "open('out.json', 'w').write('{}')",
    "open('new.json', 'x').write('{}')",
    "import os\nos.close(os.open('n.bin', os.O_WRONLY | os.O_CREAT))",
])
def test_files_only_written_are_not_inputs(tmp_path, body):
    inputs = _record(tmp_path, body)
    assert inputs["files"] == {} and inputs["cwd"] is None


@pytest.mark.parametrize("body", [
    "import os\nos.listdir('configs')",
    "import os\nlist(os.scandir('configs'))",
    "import glob\nglob.glob('configs/*.yaml')",
    "import pathlib\nlist(pathlib.Path('configs').iterdir())",
    "import pathlib\nlist(pathlib.Path('configs').glob('*.yaml'))",
])
def test_directory_listings_are_recorded(tmp_path, body):
    (tmp_path / "project" / "configs").mkdir(parents=True)
    (tmp_path / "project" / "configs" / "a.yaml").write_text("")
    inputs = _record(tmp_path, body)
    assert "configs" in inputs["dirs"], inputs
    root = tmp_path / "project"
    assert _changed(inputs, root) == "None"
    (root / "configs" / "b.yaml").write_text("")
    assert _changed(inputs, root) == "the files in configs changed"


def test_imports_are_not_listings_of_the_model(tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "helper.py").write_text("X = 1\n")
    inputs = _record(tmp_path, f"import sys\nsys.path.insert(0, {str(tmp_path / 'project')!r})\nimport helper")
    assert inputs["dirs"] == {} and "helper.py" in inputs["files"]  # (a .pyc counts as its source)


@pytest.mark.parametrize("body, name", [
    ("os.environ['GATE_A']", "GATE_A"),
    ("os.environ.get('GATE_A')", "GATE_A"),
    ("os.getenv('GATE_A', '3')", "GATE_A"),
    ("'GATE_A' in os.environ", "GATE_A"),
    ("os.environb.get(b'GATE_A')", "GATE_A"),
    ("os.getenv('GATE_ABSENT')", "GATE_ABSENT"),
    ("os.path.expanduser('~/x')", "HOME"),
])
def test_every_way_of_reading_a_variable_is_recorded(tmp_path, body, name):
    inputs = _record(tmp_path, "import os\n" + body, env={"GATE_A": "1"})
    assert name in inputs["env"], inputs
    assert inputs["env"][name] == os.environ.get(name, "1" if name == "GATE_A" else None)
    root = tmp_path / "project"
    assert _changed(inputs, root, {"GATE_A": "1"}) == "None"
    assert _changed(inputs, root, {"GATE_A": "2", "GATE_ABSENT": "x", "HOME": "/elsewhere"}) == f"${name} changed"


def test_variables_set_by_the_model_and_read_by_libraries_are_not_inputs(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "lib_env.py").write_text("import os\nVALUE = os.environ.get('GATE_LIB')\n")
    inputs = _record(tmp_path, "import os\nos.environ['GATE_SET'] = '1'\nos.environ['GATE_SET']\nimport lib_env",
                     env={"GATE_LIB": "1"})
    assert inputs["env"] == {}, inputs


def test_a_relative_path_makes_the_current_directory_an_input(tmp_path):
    (tmp_path / "project" / "sub").mkdir(parents=True)
    (tmp_path / "project" / "a.json").write_text("{}")
    inputs = _record(tmp_path, "open('a.json').read()")
    assert inputs["cwd"] == "."
    assert _changed(inputs, tmp_path / "project") == "None"
    script = ("import json, os, sys\nfrom depthscope.check.record import changed_input\n"
              "print(changed_input(json.loads(sys.argv[1]), sys.argv[2]))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(inputs), str(tmp_path / "project")],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path / "project" / "sub"))
    assert "current directory changed" in proc.stdout
    absolute = _record(tmp_path, f"open({str(tmp_path / 'project' / 'a.json')!r}).read()")
    assert absolute["cwd"] is None


# ---------------------------------------------------------------------------------------------
# Through the command: a model choosing its architecture from the files in a directory


GLOB_MODEL = SCALE.replace("import torch\n", "import glob\nimport os\nimport torch\n", 1).replace(
    "        return x * 2",
    "        return x.sum(1) if glob.glob(os.path.join(os.path.dirname(__file__), 'configs', '*.sum')) else x * 2")


def test_a_model_choosing_by_the_files_present_is_reanalyzed(tmp_path, capsys):
    (tmp_path / "configs").mkdir()
    project = Project(tmp_path).write([{"path": "m.py", "depth": "1"}], models={"m.py": GLOB_MODEL})
    assert project.run(capsys=capsys)[0] == 0
    assert "1 from cache" in project.run(capsys=capsys)[1]
    (tmp_path / "configs" / "deep.sum").write_text("")
    code, out, err = project.run("-v", capsys=capsys)
    assert code == 1 and "re-analyzed: the files in configs changed" in out
