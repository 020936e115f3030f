"""docs/seed.md recomputed from code: every depthscope formula and number it quotes, so the page cannot drift."""

import re
from pathlib import Path

import pytest
import sympy

import depthscope
from conftest import ROOT, example
from depthscope.cost.traffic import FAST_MEMORY
from depthscope.predict.profiles import H100
from depthscope.predict.roofline import NodeTable, roofline_point, roofline_regime
from depthscope.predict.units import seconds
from depthscope.symbols import clog2, evaluate, parse_symbols, size_symbol

DOC = (Path(ROOT) / "docs" / "seed.md").read_text()
FILES = {"elementwise": "seed/elementwise.py", "sum": "seed/reduce_sum.py", "matmul": "seed/matmul.py",
         "softmax": "seed/softmax.py", "attention": "seed/attention.py", "fused": "attention.py",
         "by hand": "attention_by_hand.py"}
AT = {"b": 2, "n": 4096, "d": 64}


@pytest.fixture(scope="module")
def analyses():
    return {name: depthscope.analyze_file(example(path)) for name, path in FILES.items()}


def section(marker: str) -> str:
    return DOC.split(f"<!-- {marker}")[1].split(f"<!-- /{marker}")[0]


def parse(text: str) -> sympy.Expr:
    ns = parse_symbols(["b", "n", "d"])
    ns["M"] = FAST_MEMORY
    ns["sqrt"] = sympy.sqrt
    return sympy.parse_expr(text, local_dict=ns)


def same(a, b) -> bool:
    return sympy.simplify(sympy.expand(a - b)) == 0


def test_table_formulas_are_the_analyses(analyses):
    rows = [line for line in section("seed-table").splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == 5
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        name = cells[0]
        report = analyses[name]
        work, depth = (parse(c.strip("`")) for c in cells[3:5])
        assert same(work, report.work) and same(depth, report.depth), name
        if cells[5].isdigit():  # the article's depth, log n read as ceil(log2 n): its constant minus ours
            text = re.sub(r"(\d+) log n", r"\1*log n", cells[2]).replace("log n", "ceiling(log(n)/log(2))")
            article = parse(text)
            assert article - report.depth == int(cells[5]), name


def test_bytes_and_io_formulas(analyses):
    text = section("seed-bytes")
    head = analyses["attention"]
    quoted = [parse(t) for t in re.findall(r"`([^`]+)`", text)]
    assert len(quoted) == 3
    for expr, formula in zip(quoted, (head.bytes, head.bytes_fused, head.io)):
        assert same(expr, formula)


def _sizes(name):
    return AT if name == "attention" else {"b": AT["b"], "n": AT["n"]}


def test_numbers_at_b2_n4096_d64(analyses):
    text = section("seed-numbers")
    head = analyses["attention"]
    values = head.evaluate(**AT)
    r = roofline_point(NodeTable(head, H100), AT)
    expected = [
        f"{values['work']:,} ops: {seconds(values['work'] / H100.peak_flops)} at the 66.9 TFLOP/s peak",
        f"{values['depth']} levels: {seconds(values['depth'] * H100.level_time_s)} at 15 ns per level",
        f"{values['bytes']:,}: {seconds(values['bytes'] / H100.memory_bandwidth)} at 3.35 TB/s",
        f"{r['launches']} ops: {seconds(r['launch_s'])} at 5 µs each",
        f"{seconds(r['predicted_s'])}, {r['bound']}-bound",
        f"{round(values['bytes'] / H100.memory_bandwidth / H100.level_time_s):,} levels of 15 ns, against a depth "
        f"of {values['depth']}",
        roofline_regime(NodeTable(head, H100), "n", {"b": 2, "d": 64})["sentence"],
    ]
    for name in ("fused", "by hand"):
        report, sizes = analyses[name], _sizes(name)
        table = NodeTable(report, H100)
        point = roofline_point(table, sizes)
        io = evaluate(report.io.subs(FAST_MEMORY, H100.fast_memory_bytes), {size_symbol(k): v for k, v in sizes.items()})
        expected += [f"`{report.bytes}`: {report.evaluate(**sizes)['bytes']:,}", f"| {round(float(io)):,} |",
                     f"{seconds(point['predicted_s'])}, {point['bound']}-bound",
                     roofline_regime(table, "n", {"b": 2})["sentence"]]
        assert same(report.work, analyses["fused"].work) and same(report.depth, analyses["fused"].depth)
        assert f"`{report.work}`" in DOC and f"`{report.depth}`" in DOC
    for snippet in expected:
        assert snippet.replace(" |", "|") in text.replace(" |", "|"), snippet


def test_prose_figures(analyses):
    # one head's scores, 4 n^2 bytes, against 228 KiB of shared memory and a 50 MB L2
    assert 4 * 241**2 <= H100.fast_memory_bytes < 4 * 242**2 and "from n = 242" in DOC
    assert 4 * 3535**2 <= 50_000_000 < 4 * 3536**2 and "from n = 3,536" in DOC
    # the projections (6 b d^2 n) outweigh the rest of the work below n = 94 at d = 64
    b, n, d = (size_symbol(s) for s in "bnd")
    rest = analyses["attention"].work - 6 * b * d**2 * n
    assert all((6 * 64**2 * x > rest.subs({b: 1, d: 64, n: x})) == (x < 94) for x in (93, 94))
    # the fused kernel's I/O is 51 times less; the bytes weigh about 300 times the depth
    ios = [float(evaluate(analyses[k].io.subs(FAST_MEMORY, H100.fast_memory_bytes), {b: 2, n: 4096}))
           for k in ("by hand", "fused")]
    assert round(ios[0] / ios[1]) == 51 and "51 times less" in DOC
    values = analyses["attention"].evaluate(**AT)
    assert round(values["bytes"] / H100.memory_bandwidth / H100.level_time_s / values["depth"], -2) == 300
    # the critical path: the q projection, scores, scaling, softmax, times V; k and v are off it
    steps = analyses["attention"].critical_path(AT).steps
    assert [s.op for s in steps] == ["aten.linear.default", "aten.matmul.default", "aten.div.Tensor",
                                     "aten.softmax.int", "aten.matmul.default"]
    assert [s.module for s in steps][0] == "q"
    assert sympy.expand(steps[3].depth - (2 * clog2(n) + 3)) == 0
