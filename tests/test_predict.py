"""Predictions: Brent's range on hand-computed work and depth, crossover solving, profiles and their TOML files."""

import json
import math

import pytest
import sympy

import depthscope.cli as cli
from conftest import example
from depthscope.engine.analysis import CriticalPath, PathStep, Report
from depthscope.errors import InputError
from depthscope.predict.model import (
    critical_path_launches,
    crossover,
    point,
    predict,
    regime_sentence,
    speedup_ps,
)
from depthscope.predict.profiles import A100, H100, DeviceProfile, cpu_profile, load_profile, profile_from_dict
from depthscope.predict.sizes import parse_sizes
from depthscope.symbols import SymbolInfo, clog2, size_symbol

n = size_symbol("n")
b = size_symbol("b")

# Round numbers: one lane does 1e7 FLOP/s, a level takes 1 us, a launch 10 us.
ROUND = DeviceProfile("round", peak_flops=1e9, processors=100, level_time_s=1e-6, launch_overhead_s=1e-5)


def toy_report(work, depth, steps=None, n_max=None, extra_symbols=()) -> Report:
    """A Report with hand-set work and depth (W, D over n) and a critical path of `steps` depths."""
    symbols = {"n": SymbolInfo("n", 2, n_max)}
    for name in extra_symbols:
        symbols[name] = SymbolInfo(name, 1, None)
    steps = steps if steps is not None else [sympy.Integer(1), depth - 2, sympy.Integer(1)]
    path = tuple(PathStep(f"op{i}", "aten.toy.default", "", sympy.sympify(d)) for i, d in enumerate(steps))
    return Report(model="toy", symbols=symbols, work=sympy.sympify(work), depth=sympy.sympify(depth), flops=sympy.S.Zero,
                  nodes=(), paths=(CriticalPath(sympy.sympify(depth), path),))


# ---------------------------------------------------------------------------------------------
# Brent's range on hand-computed W and D


def test_point_matches_hand_computed_brent_range():
    report = toy_report(1000 * n**2, 10 * clog2(n) + 5)
    p = point(report, ROUND, {"n": 64})
    # W = 1000 * 64^2 = 4,096,000; D = 10 * 6 + 5 = 65; K = 3 ops on the path
    assert (p["work"], p["depth"], p["critical_path_ops"]) == (4_096_000, 65, 3)
    assert p["t1_s"] == pytest.approx(4_096_000 / 1e7)  # one lane
    assert p["work_term_s"] == pytest.approx(4_096_000 / 1e9)  # W/P in time = T1/P = W/peak
    assert p["depth_term_s"] == pytest.approx(65e-6)
    assert p["brent_lower_s"] == pytest.approx(max(4.096e-3, 65e-6))
    assert p["brent_upper_s"] == pytest.approx(4.096e-3 + 65e-6)
    assert p["launch_term_s"] == pytest.approx(3e-5)
    assert p["burdened_depth_s"] == pytest.approx(65e-6 + 3e-5)
    assert p["burdened_upper_s"] == pytest.approx(4.096e-3 + 65e-6 + 3e-5)
    assert p["bound"] == "work"


def test_speedup_table_obeys_brent():
    report = toy_report(1000 * n**2, 10 * clog2(n) + 5)
    p = point(report, ROUND, {"n": 64})
    rows = p["speedup"]
    assert [r["p"] for r in rows] == [1, 4, 16, 64, 100]
    t1, t_inf = p["t1_s"], p["depth_term_s"]
    for r in rows:
        assert r["lower_s"] == pytest.approx(max(t1 / r["p"], t_inf))
        assert r["upper_s"] == pytest.approx(t1 / r["p"] + t_inf)
        assert r["lower_s"] <= r["upper_s"] <= r["burdened_upper_s"]
        # speedup never beats p nor the parallelism T1/T_inf
        assert r["speedup_min"] <= r["speedup_max"] <= min(r["p"], t1 / t_inf) * (1 + 1e-12)
        assert r["burdened_speedup"] <= r["speedup_min"]
    assert rows[-1]["upper_s"] == pytest.approx(p["brent_upper_s"])


def test_speedup_ps():
    assert speedup_ps(1) == [1]
    assert speedup_ps(16) == [1, 4, 16]
    assert speedup_ps(16896)[-2:] == [16384, 16896]


def test_depth_bound_point():
    report = toy_report(n, 100 * clog2(n) + 5)  # tiny work, deep
    p = point(report, ROUND, {"n": 1024})
    assert p["bound"] == "depth"
    assert p["brent_lower_s"] == pytest.approx(p["depth_term_s"])


def test_loop_step_pays_one_launch_per_trip():
    report = toy_report(n, 14 * n + 18, steps=[sympy.Integer(1), 14 * n + 16, sympy.Integer(1)])
    assert critical_path_launches(report, {"n": 100}) == 1 + 100 + 1
    log_path = toy_report(n, 3 * clog2(n) + 2, steps=[sympy.Integer(1), 3 * clog2(n), sympy.Integer(1)])
    assert critical_path_launches(log_path, {"n": 4096}) == 3


# ---------------------------------------------------------------------------------------------
# Crossover


def _brute(report, profile, burdened, lo=2, hi=2000):
    """The first n at which W/peak >= D*t (+ K*o): a linear scan, the oracle for the solver."""
    for x in range(lo, hi):
        v = report.evaluate(n=x)
        rhs = v["depth"] * profile.level_time_s
        if burdened:
            rhs += critical_path_launches(report, {"n": x}) * profile.launch_overhead_s
        if v["work"] / profile.peak_flops >= rhs:
            return x
    return None


def test_crossover_solves_w_over_peak_equals_d_times_t():
    report = toy_report(n**2, 10 * clog2(n) + 5)
    # n^2 / 1e9 = (10 ceil(log2 n) + 5) * 1e-6  <=>  n^2 = 1000 D: D = 95 near n = 300, so n = 309
    plain = crossover(report, ROUND, "n", {})
    assert plain["kind"] == "crossover" and plain["at"] == 309 == _brute(report, ROUND, False)
    # with K = 3 launches of 10 us: n^2 >= 1000 D + 30000 = 125000, so n = 354
    burdened = crossover(report, ROUND, "n", {}, burdened=True)
    assert burdened["at"] == 354 == _brute(report, ROUND, True)
    text = regime_sentence("n", {}, plain, burdened)
    assert "depth-bound until n is about 310, then work-bound" in text
    assert "burdened" in text and "about 350" in text


def test_crossover_holds_other_symbols():
    report = toy_report(b * n**2, 10 * clog2(n) + 5, extra_symbols=("b",))
    at_b1 = crossover(report, ROUND, "n", {"b": 1})
    at_b100 = crossover(report, ROUND, "n", {"b": 100})
    assert at_b1["at"] == 309
    assert at_b100["at"] < at_b1["at"]  # more work per n: work-bound sooner


def test_crossover_outside_range():
    always_work = crossover(toy_report(10**9 * n, clog2(n) + 1), ROUND, "n", {})
    assert always_work["kind"] == "work-bound" and always_work["at"] is None
    capped = crossover(toy_report(n**2, 10 * clog2(n) + 5, n_max=100), ROUND, "n", {})
    assert capped["kind"] == "depth-bound" and capped["range"] == [2, 100]
    assert "up to 100" in regime_sentence("n", {}, capped, capped)
    never = crossover(toy_report(n, n), ROUND, "n", {})  # work and depth both linear: depth-bound forever
    assert never["kind"] == "depth-bound"
    assert "search limit" in regime_sentence("n", {}, never, never)


def test_predict_result_shape():
    report = toy_report(n**2, 10 * clog2(n) + 5)
    result = predict(report, ROUND, [{"n": 256}, {"n": 4096}])
    assert result["schema"] == "depthscope.predict/2"
    assert result["roofline_regimes"] == [] and result["points"][0]["roofline"] is None  # no bandwidth in ROUND
    assert [p["sizes"] for p in result["points"]] == [{"n": 256}, {"n": 4096}]
    assert [p["bound"] for p in result["points"]] == ["depth", "work"]
    (regime,) = result["regimes"]
    assert regime["symbol"] == "n" and regime["crossover"] == 309 and regime["burdened_crossover"] == 354
    json.dumps(result)  # JSON-ready


def test_parse_sizes():
    assert parse_sizes(["n=64,128", "b=8"]) == {"n": [64, 128], "b": [8]}
    for bad in ("n", "n=", "n=abc", "=4", "n=4,,8", "n=0"):
        with pytest.raises(InputError):
            parse_sizes([bad])


# ---------------------------------------------------------------------------------------------
# Profiles


def test_builtin_roofline_figures_are_the_datasheets():
    h200, a40 = load_profile("h200"), load_profile("a100-40gb")
    assert (H100.memory_bandwidth, h200.memory_bandwidth) == (3.35e12, 4.8e12)  # HBM3, HBM3e
    assert (A100.memory_bandwidth, a40.memory_bandwidth) == (2.039e12, 1.555e12)  # 80 GB HBM2e, 40 GB HBM2
    assert H100.fast_memory_bytes == h200.fast_memory_bytes == 228 * 1024  # shared memory per SM, Hopper
    assert A100.fast_memory_bytes == a40.fast_memory_bytes == 164 * 1024  # per SM, A100
    assert h200.peak_flops == H100.peak_flops and H100.ridge_intensity == pytest.approx(66.9 / 3.35)
    cpu = cpu_profile(cores=2)
    assert cpu.memory_bandwidth == 2 * 10e9 and cpu.fast_memory_bytes >= 256 * 1024


def test_builtin_profiles():
    assert load_profile("h100") is H100 and load_profile("A100") is A100
    assert H100.peak_flops == pytest.approx(16896 * 2 * 1.98e9, rel=1e-3)  # the datasheet's 67 TFLOPS FP32
    assert A100.peak_flops == pytest.approx(6912 * 2 * 1.41e9, rel=1e-3)  # 19.5 TFLOPS FP32
    for prof in (H100, A100, load_profile("h200"), load_profile("a100-40gb"), load_profile("cpu")):
        assert set(prof.sources) == {"peak_flops", "processors", "level_time_s", "launch_overhead_s",
                                     "memory_bandwidth", "fast_memory_bytes"}
        assert prof.lane_flops == pytest.approx(prof.peak_flops / prof.processors)
    four = cpu_profile(cores=4)
    assert four.processors == 64 and four.peak_flops == pytest.approx(4 * 32 * 3e9)


def test_toml_profile(tmp_path):
    path = tmp_path / "mygpu.toml"
    path.write_text('peak_flops = 1e13\nprocessors = 4096\nlevel_time_s = 2e-8\nlaunch_overhead_s = 4e-6\n'
                    'description = "my GPU"\n')
    prof = load_profile(str(path))
    assert (prof.name, prof.peak_flops, prof.processors, prof.level_time_s, prof.launch_overhead_s) == \
        ("mygpu", 1e13, 4096, 2e-8, 4e-6)
    base = tmp_path / "h100_tf32.toml"
    base.write_text('[profile]\nname = "h100-tf32"\nbase = "h100"\npeak_flops = 494.7e12\n')
    prof = load_profile(str(base))
    assert prof.name == "h100-tf32" and prof.peak_flops == 494.7e12 and prof.processors == H100.processors
    assert (prof.memory_bandwidth, prof.fast_memory_bytes) == (3.35e12, 228 * 1024)  # inherited from h100
    roof = tmp_path / "roof.toml"
    roof.write_text('base = "a100"\nmemory_bandwidth = 1.5e12\nfast_memory_bytes = 65536\n')
    prof = load_profile(str(roof))
    assert (prof.memory_bandwidth, prof.fast_memory_bytes, prof.peak_flops) == (1.5e12, 65536, A100.peak_flops)
    assert prof.ridge_intensity == pytest.approx(19.5e12 / 1.5e12) and prof.sources["memory_bandwidth"] == str(roof)
    assert load_profile(str(path)).memory_bandwidth is None  # a four-key file: Brent's terms only, no roofline


@pytest.mark.parametrize("text, message", [
    ("peak_flops = 1e12\nprocessors = 8\n", "missing level_time_s, launch_overhead_s"),
    ("peak_flops = 1e12\nprocessors = 8\nlevel_time_s = 1e-9\nlaunch_overhead_s = 1e-6\nclock = 3\n", "unknown key(s) clock"),
    ("peak_flops = -1\nprocessors = 8\nlevel_time_s = 1e-9\nlaunch_overhead_s = 1e-6\n", "must be positive"),
    ("peak_flops = 1e12\nprocessors = 2.5\nlevel_time_s = 1e-9\nlaunch_overhead_s = 1e-6\n", "positive integer"),
    ('peak_flops = "fast"\nprocessors = 8\nlevel_time_s = 1e-9\nlaunch_overhead_s = 1e-6\n', "finite number"),
    ("peak_flops = 1e12\nprocessors = 8\nlevel_time_s = -1e-9\nlaunch_overhead_s = 1e-6\n", "zero or positive"),
    ("peak_flops = 1e12\nprocessors = 8\nlevel_time_s = \n", "invalid TOML"),
    ('base = "tpu"\n', "not a built-in profile"),
    ('base = "h100"\nmemory_bandwidth = 0\n', "must be positive (bytes/s)"),
    ('base = "h100"\nfast_memory_bytes = 1.5\n', "fast_memory_bytes = 1.5 must be a positive integer"),
])
def test_toml_profile_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_profile(str(path))


def test_profile_name_errors(tmp_path):
    with pytest.raises(InputError, match="unknown device profile 'tpu'"):
        load_profile("tpu")
    with pytest.raises(InputError, match="no such file"):
        load_profile(str(tmp_path / "missing.toml"))
    with pytest.raises(InputError, match="must be a finite number"):
        profile_from_dict({"peak_flops": math.inf, "processors": 1, "level_time_s": 0, "launch_overhead_s": 0})


# ---------------------------------------------------------------------------------------------
# CLI


def _run(capsys, argv):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_bad_profile_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("peak_flops = [\n")
    code, out, err = _run(capsys, ["predict", example("attention.py"), "--device-profile", str(bad)])
    assert code == 2 and out == ""
    assert "invalid TOML" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, ["predict", example("attention.py"), "--device-profile", "tpu"])
    assert code == 2 and "unknown device profile" in err
    code, _, err = _run(capsys, ["predict", example("attention.py"), "--at", "n=abc"])
    assert code == 2 and "expected NAME=INT" in err


def test_cli_predict_gpt_h100_table(capsys):
    code, out, err = _run(capsys, ["predict", example("gpt.py"), "--at", "n=1024", "--at", "b=8",
                                   "--device-profile", "h100"])
    assert code == 0, err
    assert "Brent range T_P" in out and "speedup T1/T_p" in out
    assert "Over n (holding b=8): depth-bound until n is about" in out
    assert "then work-bound" in out


def test_cli_predict_json_and_markdown(capsys):
    code, out, err = _run(capsys, ["predict", example("attention.py"), "--at", "n=256,4096", "--at", "b=2",
                                   "--device-profile", "a100", "--format", "json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["profile"]["name"] == "a100"
    assert [p["sizes"]["n"] for p in result["points"]] == [256, 4096]
    for p in result["points"]:
        assert p["brent_lower_s"] <= p["brent_upper_s"] <= p["burdened_upper_s"]
    assert {r["symbol"] for r in result["regimes"]} == {"b", "n"}
    code, out, _ = _run(capsys, ["predict", example("attention.py"), "--at", "n=512", "--over", "n",
                                 "--device-profile", "cpu", "--format", "markdown"])
    assert code == 0 and out.startswith("# depthscope prediction: attention on cpu")
    assert "## regime" in out and "Over n (holding b=2)" in out  # b from the example inputs
