"""validate: timed sweeps on CPU, the NNLS fit, the verdict, clean stops, the CUDA check and the plot."""

import contextlib
import io
import json
import sys

import numpy as np
import pytest
import torch

import depthscope
import depthscope.cli as cli
from conftest import example
from depthscope.errors import InputError
from depthscope.predict.fit import SCIPY_MISSING, fit_terms, fit_time, nnls, nnls_exhaustive, r_squared, slope
from depthscope.predict.profiles import cpu_profile
from depthscope.predict.roofline import NodeTable
from depthscope.predict.verdict import EXPLAINED_R2, verdict

HAS_MPL = True
try:
    import matplotlib  # noqa: F401
except ImportError:
    HAS_MPL = False


def _main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------------------------
# NNLS and the fit on synthetic data


@pytest.mark.parametrize("method", ["builtin", "scipy"])
def test_fit_recovers_known_alpha_beta_gamma(method):
    if method == "scipy":
        pytest.importorskip("scipy")
    sizes = np.array([64, 128, 256, 512, 1024, 2048, 4096], dtype=float)
    work = 280 * sizes**2 + 32768 * sizes
    depth = 3 * np.ceil(np.log2(sizes)) + 24
    alpha, beta, gamma = 2e-11, 3e-6, 5e-5
    times = alpha * work + beta * depth + gamma
    fit = fit_time(work, depth, times, method=method)
    assert fit["alpha_s_per_op"] == pytest.approx(alpha, rel=1e-6)
    assert fit["beta_s_per_level"] == pytest.approx(beta, rel=1e-4)
    assert fit["gamma_s"] == pytest.approx(gamma, rel=1e-4)
    assert fit["r2"] == pytest.approx(1.0) and fit["r2_log"] == pytest.approx(1.0)
    assert ("scipy" in fit["method"]) == (method == "scipy")


def test_fit_with_noise_stays_close_and_non_negative():
    rng = np.random.default_rng(0)
    sizes = 2.0 ** np.arange(4, 13)
    work, depth = sizes**2, 2 * np.log2(sizes) + 10
    times = (1e-9 * work + 1e-4) * (1 + 0.02 * rng.standard_normal(len(sizes)))
    fit = fit_time(work, depth, times, method="builtin")
    assert min(fit["alpha_s_per_op"], fit["beta_s_per_level"], fit["gamma_s"]) >= 0
    assert fit["alpha_s_per_op"] == pytest.approx(1e-9, rel=0.1)
    assert fit["r2_log"] > 0.99


def test_nnls_builtin_matches_scipy_with_active_constraints():
    scipy_opt = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.standard_normal((8, 3))
        truth = np.array([1.0, -2.0, 0.5])  # a negative coefficient: the constraint binds
        b = a @ truth + 0.1 * rng.standard_normal(8)
        mine = nnls_exhaustive(a, b)
        ref, _ = scipy_opt.nnls(a, b)
        assert np.all(mine >= 0)
        assert np.linalg.norm(a @ mine - b) == pytest.approx(np.linalg.norm(a @ ref - b), rel=1e-9, abs=1e-12)
    x, used = nnls(np.eye(2), np.array([1.0, -1.0]), method="builtin")
    assert list(x) == [1.0, 0.0] and "built-in" in used


def test_fit_with_bytes_recovers_known_coefficients_and_says_which_terms_explain():
    # columns that are not proportional: work ~ n^2, bytes ~ n, depth ~ log n, launches fixed (a per-call cost)
    sizes = 2.0 ** np.arange(5, 13)
    cols = {"W": 280 * sizes**2 + 32768 * sizes, "Q": 4096 * sizes + 65536, "D": 3 * np.log2(sizes) + 24,
            "K": np.full(len(sizes), 25.0)}
    truth = {"W": 2e-11, "Q": 5e-10, "D": 0.0, "K": 4e-6}
    times = sum(truth[k] * cols[k] for k in cols)
    fit = fit_terms(cols, times, method="builtin")
    got = {t["term"]: t["coefficient"] for t in fit["terms"]}
    for k, v in truth.items():
        assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-18)
    assert fit["explained_by"] == ["W", "Q", "K"]  # depth got no weight
    assert fit["r2"] == pytest.approx(1.0) and fit["r2_log"] == pytest.approx(1.0)
    shares = {t["term"]: t["share"] for t in fit["terms"]}
    expected = {k: np.mean(truth[k] * cols[k] / times) for k in cols}
    assert shares == pytest.approx(expected)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert fit["note"] is None  # the built-in solver was asked for
    auto = fit_terms(cols, times)
    try:
        import scipy  # noqa: F401
    except ImportError:
        assert auto["note"] == SCIPY_MISSING and "depthscope[validate]" in auto["note"]
    else:
        assert auto["note"] is None and auto["method"] == "scipy.optimize.nnls"
    work_only = fit_terms({"W": cols["W"]}, times, method="builtin")
    assert work_only["r2"] < fit["r2"] and work_only["terms"][0]["coefficient"] > 0


def test_r_squared_and_slope():
    y = np.array([1.0, 2.0, 3.0])
    assert r_squared(y, y) == 1.0 and r_squared(np.ones(3), np.ones(3)) is None
    assert slope([64, 128, 256], [1.0, 4.0, 16.0]) == pytest.approx(2.0)
    assert slope([64], [1.0]) is None


def _fake_result(times, depth=(10, 12, 14, 16)):
    xs = [64, 128, 256, 512]
    work = [x**2 for x in xs]
    fit = fit_time(work, depth, times)
    fit.pop("predicted_s")
    points = [{"size": x, "work": w, "depth": d, "median_s": t,
               "predicted": {"burdened_upper_s": w * 1e-9, "brent_upper_s": w * 1e-9}}
              for x, w, d, t in zip(xs, work, depth, times)]
    return {"points": points, "fit": fit, "symbol": "n", "profile": {"name": "cpu"},
            "slopes": {"measured": {"all": slope(xs, times), "tail": slope(xs[2:], times[2:])},
                       "work": {"all": 2.0, "tail": 2.0}, "depth": {"all": 0.1, "tail": 0.1},
                       "predicted": {"all": 2.0, "tail": 2.0}}}


def test_verdict_plain_words():
    good = verdict(_fake_result([1e-9 * x**2 + 1e-5 for x in (64, 128, 256, 512)]))
    assert good["explained"] is True and "explains these measurements" in good["text"]
    bad = verdict(_fake_result([5e-3, 1e-4, 4e-3, 2e-4]))  # times that follow neither W nor D
    assert bad["explained"] is False and "does NOT explain" in bad["text"]
    few = verdict({"points": [{}], "fit": None, "symbol": "n"})
    assert few["explained"] is None and "too few" in few["text"]


# ---------------------------------------------------------------------------------------------
# Timed runs on CPU


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One small CPU sweep of examples/attention.py (tiny sizes), with a plot when matplotlib is installed."""
    png = tmp_path_factory.mktemp("plot") / "attention.png"
    argv = ["validate", example("attention.py"), "--sizes", "n=8,16,32,64", "--repeats", "3", "--threads", "1",
            "--format", "json"]
    if HAS_MPL:
        argv += ["--plot", str(png)]
    code, out, err = _main(argv)
    assert code == 0, err
    return json.loads(out), png


def test_small_cpu_run_json(small_run):
    result, _ = small_run
    analysis = depthscope.analyze_file(example("attention.py"))
    for key in ("schema", "model", "device", "threads", "profile", "symbol", "held", "sizes", "median_s", "iqr_s",
                "predicted", "points", "fit", "slopes", "verdict", "stopped_early", "elapsed_s"):
        assert key in result, key
    assert result["schema"] == "depthscope.validate/2"
    assert result["sizes"] == [8, 16, 32, 64] and result["held"] == {"b": 2}
    assert result["device"] == "cpu" and result["threads"] == 1 and result["profile"]["name"] == "cpu"
    assert not result["stopped_early"]
    for p in result["points"]:
        assert p["median_s"] > 0 and p["iqr_s"] >= 0 and p["q1_s"] <= p["median_s"] <= p["q3_s"]
        assert p["repeats"] == 3 and p["number"] >= 1
        assert p["work"] == analysis.evaluate(b=2, n=p["size"])["work"]  # the analysis's own count, at that size
        pr = p["predicted"]
        assert pr["brent_lower_s"] <= pr["brent_upper_s"] <= pr["burdened_upper_s"] and pr["fit_s"] > 0
    fit = result["fit"]
    assert min(fit["alpha_s_per_op"], fit["beta_s_per_level"], fit["gamma_s"]) >= 0
    assert fit["r2"] is not None and fit["r2"] <= 1
    assert result["slopes"]["work"]["all"] > 1
    # the verdict follows from the fit's two R^2 (EXPLAINED_R2), both ways
    expected = fit["r2"] >= EXPLAINED_R2 and fit["r2_log"] is not None and fit["r2_log"] >= EXPLAINED_R2
    assert result["verdict"]["explained"] is expected
    assert ("does NOT explain" in result["verdict"]["text"]) is (not expected)
    assert len(result["predicted"]["fit_s"]) == 4
    # bytes and launches per size are the analysis's own; both fits report R^2; the verdict names their terms
    table = NodeTable(analysis, cpu_profile(cores=1))
    for p in result["points"]:
        assert p["bytes"] == analysis.evaluate(b=2, n=p["size"])["bytes"]
        assert p["launches"] == table.launches({"b": 2, "n": p["size"]}) > 0
        assert p["predicted"]["roofline_s"] > 0 and p["predicted"]["fit_bytes_s"] > 0
    full, work = result["fit_bytes"], result["fit_work"]
    assert [t["term"] for t in full["terms"]] == ["W", "Q", "D", "K"] and [t["term"] for t in work["terms"]] == ["W"]
    assert all(t["coefficient"] >= 0 for t in full["terms"]) and full["r2"] is not None and work["r2"] is not None
    assert set(full["explained_by"]) <= {"W", "Q", "D", "K"}
    assert f"R^2 = {full['r2']:.3f}" in result["verdict"]["text"] and f"R^2 = {work['r2']:.3f}" in result["verdict"]["text"]


def test_plot_file_is_written(small_run):
    if not HAS_MPL:
        pytest.skip("matplotlib is not installed")
    result, png = small_run
    assert result["plot"] == str(png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plot_without_matplotlib_exits_2(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    from depthscope.predict.plot import require_matplotlib

    with pytest.raises(InputError, match=r"pip install 'depthscope\[plot\]'"):
        require_matplotlib()


def test_gpt_integer_inputs_stay_valid():
    from depthscope.predict.validate import run_validation

    result = run_validation(example("gpt.py"), "n", [8, 16, 32], repeats=1, threads=1, progress=False)
    assert result["sizes"] == [8, 16, 32] and result["held"] == {"b": 2}
    assert result["fit"] is not None


def test_max_seconds_stops_cleanly():
    code, out, err = _main(["validate", example("attention.py"), "--sizes", "n=8,16,32,64,128,256,512,1024,2048",
                            "--repeats", "3", "--threads", "1", "--max-seconds", "0.3", "--format", "json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["stopped_early"] and "--max-seconds" in result["stop_reason"]
    assert "stopped early" in err
    done = result["sizes"]
    assert 1 <= len(done) < 9 and done == result["requested_sizes"][: len(done)]
    assert len(result["median_s"]) == len(done)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_exits_2():
    code, out, err = _main(["validate", example("attention.py"), "--sizes", "n=8,16", "--device", "cuda"])
    assert code == 2 and out == ""
    assert "CUDA is not available" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--sizes", "n"], "expected NAME=INT"),
    (["--sizes", "n=8,8"], "sizes repeat"),
    (["--sizes", "n=8", "--at", "n=4"], "swept symbol"),
    (["--sizes", "n=8,16", "--repeats", "0"], "repeats"),
])
def test_bad_arguments_exit_2(argv, message):
    code, _, err = _main(["validate", example("attention.py"), *argv])
    assert code == 2 and message in err


def test_plot_into_missing_folder_exits_2_before_timing():
    if not HAS_MPL:
        pytest.skip("matplotlib is not installed")
    code, out, err = _main(["validate", example("attention.py"), "--sizes", "n=8,16",
                            "--plot", "/nonexistent-depthscope-dir/x.png"])
    assert code == 2 and out == "" and "does not exist" in err
