"""The roofline in `predict`: regime search, exact numerics, hand-counted toy models, and GPT on an H100 profile.

The GPT checks recompute every op's roofline from its node's own bytes and FLOP-like work with sympy (not the
compiled evaluator predict uses), and derive the regime words and the crossovers from those numbers.
"""

import json
from types import SimpleNamespace

import pytest
import sympy

import depthscope
import depthscope.cli as cli
from conftest import example
from depthscope.cost.traffic import FAST_MEMORY
from depthscope.engine.analysis import CriticalPath, PathStep
from depthscope.engine.nodes import NodeCost
from depthscope.predict.devices import DeviceProfile
from depthscope.predict.numeric import Compiled
from depthscope.predict.profiles import H100
from depthscope.predict.regimes import changes_clause, regime_changes, scan_sizes
from depthscope.predict.roofline import LABELS, NodeTable, roofline_point, roofline_regime
from depthscope.symbols import SymbolInfo, clog2, evaluate, size_symbol

b, n = size_symbol("b"), size_symbol("n")

# Round numbers: 1 GFLOP/s, 100 MB/s, a level 1 us, a launch 10 us.
ROUND = DeviceProfile("round", peak_flops=1e9, processors=100, level_time_s=1e-6, launch_overhead_s=1e-5,
                      memory_bandwidth=1e8, fast_memory_bytes=1 << 20)


# ---------------------------------------------------------------------------------------------
# The regime search and the exact evaluator


def brute_changes(classify, lo, hi):
    """Every size whose label differs from the size before it: the oracle for the scan-and-bisect search."""
    labels = [classify(x) for x in range(lo, hi + 1)]
    return labels[0], [(lo + i, labels[i]) for i in range(1, len(labels)) if labels[i] != labels[i - 1]]


@pytest.mark.parametrize("cuts", [(), (7,), (40, 300), (3, 90, 1000, 1500)])
def test_regime_changes_match_a_linear_scan(cuts):
    names = ["launch", "memory", "compute", "depth", "memory"]

    def classify(x):
        return names[sum(x >= c for c in cuts)]

    assert regime_changes(classify, 2, 2000) == brute_changes(classify, 2, 2000)
    first, changes = regime_changes(classify, 2, 2000)
    text = changes_clause("b", first, changes, 2, 2000, False)
    if not cuts:
        assert text == "launch-bound at every b from 2 to 2,000 (its max)"
    else:
        assert text.startswith(f"launch-bound until b is about {cuts[0]}")
        assert text.endswith(f"then {names[len(cuts)]}-bound")


def test_scan_sizes_double_and_end_at_the_max():
    assert scan_sizes(2, 100) == [2, 4, 8, 16, 32, 64, 100]
    assert scan_sizes(1, 3) == [1, 2, 3]
    assert scan_sizes(5, 5) == [5]


def test_compiled_formulas_keep_log2_exact_at_powers_of_two():
    exprs = [b * n**2 + 3 * clog2(n) * clog2(b * n), clog2(n) + sympy.floor(sympy.log(n) / sympy.log(2)),
             sympy.Max(b, 3 * n) + sympy.Integer(7)]
    compiled = Compiled(exprs, ["b", "n"])
    for bv, nv in ((2, 2), (3, 2**29), (2**20, 2**29 + 1), (5, 1000)):
        expected = [float(evaluate(e, {b: bv, n: nv})) for e in exprs]
        assert compiled.values({"b": bv, "n": nv}) == expected


# ---------------------------------------------------------------------------------------------
# A hand-counted toy: a matmul and an add


class Toy:
    """A duck-typed analysis of two ops: a 'matmul' (work 100 b, bytes 4 b + 400) and an 'add' (b, 8 b)."""

    symbols = {"b": SymbolInfo("b", 2, None)}
    breakdown_at = None

    def __init__(self):
        cost = SimpleNamespace
        self.nodes = (
            NodeCost("mm", "aten.mm", "", "", cost(work=100 * b, depth=clog2(b) + 1, bytes=4 * b + 400), "modeled"),
            NodeCost("add", "aten.add", "", "", cost(work=b, depth=sympy.S.One, bytes=8 * b), "modeled"),
            NodeCost("view", "aten.view", "", "", cost(work=0, depth=sympy.S.Zero, bytes=0), "free"),
        )
        self.work, self.bytes, self.depth = 101 * b, 12 * b + 400, clog2(b) + 2
        self.io = self.bytes + 8 * b**2 / FAST_MEMORY  # a made-up bound: the profile's M must be put in

    def critical_path(self, sizes):
        return CriticalPath(self.depth, (PathStep("mm", "aten.mm", "", clog2(b) + 1),
                                         PathStep("add", "aten.add", "", sympy.S.One)))

    def value(self, expr, sizes):
        return float(evaluate(sympy.sympify(expr), {size_symbol(k): v for k, v in sizes.items()}))


def test_toy_roofline_by_hand():
    table = NodeTable(Toy(), ROUND)
    r = roofline_point(table, {"b": 1000})
    # mm: 1e5 ops / 1e9 = 100 us > 4400 B / 1e8 = 44 us: compute-bound; add: 1 us < 8000 B / 1e8 = 80 us: memory
    assert r["compute_s"] == pytest.approx(1e-4) and r["memory_s"] == pytest.approx(8e-5)
    assert r["depth_s"] == pytest.approx((10 + 2) * 1e-6) and r["launches"] == 2 and r["launch_s"] == 2e-5
    assert r["predicted_s"] == pytest.approx(1e-4 + 8e-5 + 12e-6 + 2e-5)
    assert r["lower_s"] == pytest.approx(max(101_000 / 1e9, 12_400 / 1e8, 12e-6))
    assert r["upper_s"] == pytest.approx(1e-4 + 8e-5 + 12e-6)
    assert r["bound"] == "compute" and r["io_bytes"] == 12_400 + 8 * 1000**2 / 2**20
    ops = {o["op"]: o for o in r["ops"]}
    assert set(ops) == {"aten.mm", "aten.add"}  # the free view launches nothing
    assert ops["aten.mm"]["bound"] == "compute" and ops["aten.add"]["bound"] == "memory"
    assert ops["aten.mm"]["depth_s"] == pytest.approx(11e-6) and ops["aten.add"]["launch_s"] == 1e-5
    assert sum(o["time_s"] for o in r["ops"]) == pytest.approx(r["predicted_s"])
    # 100 b / 1e9 >= 2 * 10 us from b = 200 on; below, two launches (20 us) are the largest part
    regime = roofline_regime(table, "b", {})
    assert regime["first"] == "launch" and regime["changes"] == [{"at": 200, "bound": "compute"}]
    assert regime["sentence"] == "Over b: launch-bound until b is about 200, then compute-bound."


# ---------------------------------------------------------------------------------------------
# GPT on the H100 profile, against a recomputation from each node's own bytes and work


@pytest.fixture(scope="module")
def gpt():
    return depthscope.analyze_file(example("gpt.py"))


def recomputed(report, profile, sizes):
    """T's four parts for the model and per op, from every node's work and bytes evaluated by sympy."""
    values = {size_symbol(k): v for k, v in sizes.items()}
    model = dict.fromkeys(LABELS, 0.0)
    per_op: dict = {}
    for node in report.nodes:
        work = float(evaluate(node.cost.work, values))
        moved = float(evaluate(node.cost.bytes, values))
        if node.status == "free" or (work == 0 and moved == 0):
            continue
        op = per_op.setdefault(node.op, dict.fromkeys(LABELS, 0.0))
        compute, memory = work / profile.peak_flops, moved / profile.memory_bandwidth
        side = "compute" if compute >= memory else "memory"
        for part, seconds in ((side, max(compute, memory)), ("launch", profile.launch_overhead_s)):
            op[part] += seconds  # GPT has no loops: every op launches once
            model[part] += seconds
    for step in report.critical_path(sizes).steps:
        per_op[step.op]["depth"] += float(evaluate(step.depth, values)) * profile.level_time_s
    model["depth"] = float(evaluate(report.depth, values)) * profile.level_time_s
    return model, per_op


def largest(parts):
    return max(LABELS, key=lambda label: parts[label])


@pytest.mark.parametrize("sizes, expected", [({"b": 2, "n": 128}, {"memory", "launch"}),
                                             ({"b": 64, "n": 1024}, {"compute"})])
def test_gpt_regime_words_follow_from_the_nodes(gpt, sizes, expected):
    r = roofline_point(NodeTable(gpt, H100), sizes)
    model, per_op = recomputed(gpt, H100, sizes)
    assert r["bound"] == largest(model) and r["bound"] in expected
    for key, label in (("compute_s", "compute"), ("memory_s", "memory"), ("depth_s", "depth"), ("launch_s", "launch")):
        assert r[key] == pytest.approx(model[label], rel=1e-9)
    assert r["predicted_s"] == pytest.approx(sum(model.values()), rel=1e-9)
    assert {o["op"]: o["bound"] for o in r["ops"]} == {op: largest(parts) for op, parts in per_op.items()}
    values = gpt.evaluate(**sizes)
    assert r["bytes"] == values["bytes"] and r["work"] == values["work"]
    assert r["lower_s"] <= r["upper_s"] <= r["predicted_s"]


def test_gpt_crossovers_are_where_the_recomputed_bound_changes(gpt):
    table = NodeTable(gpt, H100)
    for symbol, held in (("b", {"n": 128}), ("n", {"b": 64})):
        regime = roofline_regime(table, symbol, held)
        assert regime["changes"], regime["sentence"]
        before = regime["first"]
        for change in regime["changes"]:
            x = change["at"]
            assert largest(recomputed(gpt, H100, {**held, symbol: x - 1})[0]) == before
            assert largest(recomputed(gpt, H100, {**held, symbol: x})[0]) == change["bound"]
            before = change["bound"]
        assert before == "compute"  # large sizes end compute-bound
        assert "then compute-bound" in regime["sentence"] and "until" in regime["sentence"]


def test_gpt_times_grow_with_the_sizes(gpt):
    table = NodeTable(gpt, H100)
    for symbol, held, sizes in (("b", {"n": 128}, [2, 3, 8, 64, 500, 4096]), ("n", {"b": 2}, [2, 17, 128, 129, 1024])):
        times = [roofline_point(table, {**held, symbol: x}) for x in sizes]
        for key in ("predicted_s", "roofline_s", "compute_s", "lower_s", "upper_s"):
            series = [t[key] for t in times]
            assert series == sorted(series), (symbol, key, series)
        assert [t["launches"] for t in times] == [times[0]["launches"]] * len(times)  # no loops: fixed kernels


def test_cli_predict_gpt_h100_says_launch_bound_then_compute_bound(tmp_path, capsys):
    png = tmp_path / "roofline.png"
    argv = ["predict", example("gpt.py"), "--device-profile", "h100", "--at", "b=2", "--at", "n=128",
            "--plot", str(png)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "launch-bound" in out and "Over b (holding n=128): launch-bound until b is about" in out
    assert "then compute-bound" in out and f"plot: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert cli.main(argv[:-2] + ["--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["schema"] == "depthscope.predict/2"
    (p,) = result["points"]
    assert p["roofline"]["bound"] == "launch" and p["roofline"]["ops"][0]["op"] == "aten.linear.default"
    assert {r["symbol"] for r in result["roofline_regimes"]} == {"b", "n"}


def test_cli_plot_needs_a_bandwidth(tmp_path, capsys):
    prof = tmp_path / "four.toml"
    prof.write_text("peak_flops = 1e12\nprocessors = 8\nlevel_time_s = 1e-9\nlaunch_overhead_s = 1e-6\n")
    argv = ["predict", example("mlp.py"), "--device-profile", str(prof)]
    assert cli.main(argv + ["--plot", str(tmp_path / "x.png")]) == 2
    assert "no memory_bandwidth" in capsys.readouterr().err
    assert cli.main(argv) == 0
    assert "no memory_bandwidth in the profile: no roofline" in capsys.readouterr().out


def test_cli_fast_memory_replaces_the_profiles_m(capsys):
    argv = ["predict", example("attention.py"), "--at", "b=2", "--at", "n=1024", "--format", "json"]
    assert cli.main(argv + ["--fast-memory", "50MB"]) == 0
    big = json.loads(capsys.readouterr().out)["points"][0]["roofline"]
    assert cli.main(argv) == 0
    small = json.loads(capsys.readouterr().out)["points"][0]["roofline"]
    report = depthscope.analyze_file(example("attention.py"))
    for r, m in ((big, 50_000_000), (small, H100.fast_memory_bytes)):
        expected = float(evaluate(report.io.subs(FAST_MEMORY, m), {b: 2, n: 1024}))
        assert r["fast_memory_bytes"] == m and r["io_bytes"] == pytest.approx(expected, rel=1e-12)
    assert big["io_bytes"] < small["io_bytes"]  # a larger fast memory: fewer re-reads of K and V


def test_plot_of_a_model_doing_no_work_is_one_line_exit_2(tmp_path, capsys):
    import depthscope.cli as cli

    path = tmp_path / "nothing.py"
    path.write_text("import torch\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return x.sum()\n\n"
                    "model = M\nexample_inputs = (torch.zeros(0),)\n")
    code = cli.main(["predict", str(path), "--device-profile", "h100", "--plot", str(tmp_path / "r.png")])
    err = capsys.readouterr().err
    assert code == 2 and "nothing to draw" in err and "internal error" not in err, err
