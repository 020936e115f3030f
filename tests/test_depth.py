"""The longest-path engine: sequence adds, branches take the max, dominated paths are pruned."""

import pytest
import sympy
import torch
from torch.export import Dim

import depthscope
from depthscope.engine.paths import Dominance, forms_of, to_expr
from depthscope.symbols import SymbolInfo, clog2, evaluate, size_symbol

b, n, d = (size_symbol(s) for s in "bnd")
LOG_N, LOG_D = clog2(n), clog2(d)


class Chain(torch.nn.Module):
    """k elementwise ops in sequence: depth k, work k * numel."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        for _ in range(self.k):
            x = x + 1
        return x


class Branches(torch.nn.Module):
    """A sum over n and a sum over d in parallel, then combined: neither path dominates."""

    def forward(self, x):
        return x.sum(1, keepdim=True) + x.sum(2, keepdim=True)


class Dominated(torch.nn.Module):
    """Two paths over the same axis, one with two extra steps: only the longer survives."""

    def forward(self, x):
        short = x.sum(1, keepdim=True)
        long = ((x * 2) + 1).sum(1, keepdim=True)
        return short + long


def test_chain_adds_depth_and_work():
    report = depthscope.analyze(Chain(5), (torch.randn(2, 8),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    assert report.depth == 5
    assert sympy.expand(report.work - 5 * b * n) == 0
    assert [s.op for s in report.critical_path().steps] == ["aten.add.Tensor"] * 5


def test_parallel_branches_take_max_of_incomparable_paths():
    report = depthscope.analyze(Branches(), (torch.randn(2, 8, 4),),
                                dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n"), 2: Dim("d")}})
    # each branch: one reduction tree, then the add (depth 1)
    assert report.depth == sympy.Max(LOG_N + 1, LOG_D + 1)
    assert report.big_o["depth"] == sympy.log(n) + sympy.log(d)
    assert report.evaluate(b=2, n=1024, d=8)["depth"] == 11
    assert report.evaluate(b=2, n=4, d=4096)["depth"] == 13


def test_dominated_path_is_pruned():
    report = depthscope.analyze(Dominated(), (torch.randn(2, 8),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    assert report.depth == LOG_N + 3  # mul, add, sum tree, final add
    assert "Max" not in str(report.depth)


def test_bounded_dims_decide_comparisons():
    # 2*ceil(log2 n) + 3 vs ceil(log2 n) + 5: incomparable for n >= 2, but with n >= 4 the first dominates
    a = forms_of(2 * LOG_N + 3)[0]
    c = forms_of(LOG_N + 5)[0]
    assert not Dominance({"n": SymbolInfo("n", 2)}).dominates(a, c)
    assert Dominance({"n": SymbolInfo("n", 4)}).dominates(a, c)
    # an upper bound lets a constant dominate: 20 >= ceil(log2 n) + 5 when n <= 2**15
    assert Dominance({"n": SymbolInfo("n", 2, 2**15)}).dominates(forms_of(sympy.Integer(20))[0], c)
    assert not Dominance({"n": SymbolInfo("n", 2)}).dominates(forms_of(sympy.Integer(20))[0], c)


def test_correlated_atoms_compare():
    # ceil(log2(b*n)) >= ceil(log2 n) for every b >= 1
    dom = Dominance({"b": SymbolInfo("b"), "n": SymbolInfo("n")})
    assert dom.dominates(forms_of(clog2(b * n))[0], forms_of(LOG_N)[0])
    assert not dom.dominates(forms_of(LOG_N)[0], forms_of(clog2(b * n))[0])


@pytest.mark.parametrize("expr,count", [
    (LOG_N + 3, 1),
    (sympy.Max(LOG_N, LOG_D) + 1, 2),
    (2 * sympy.Max(LOG_N, 3) + sympy.Max(LOG_D, 1), 4),
], ids=["linear", "max-plus-const", "sum-of-maxes"])
def test_forms_distribute_max_over_sum(expr, count):
    forms = forms_of(expr)
    assert len(forms) == count
    rebuilt = sympy.Max(*[to_expr(f) for f in forms])
    for nv, dv in [(2, 2), (2, 4096), (1000, 3), (2**20, 2**9)]:
        assert evaluate(rebuilt, {n: nv, d: dv}) == evaluate(expr, {n: nv, d: dv})


def test_long_chain_is_linear_in_graph_size():
    """1,000 sequential reductions: one closed form, analyzed quickly (depth 1000 ceil(log2 n) + ...)."""

    class Deep(torch.nn.Module):
        def forward(self, x):
            for _ in range(500):
                x = torch.softmax(x, dim=-1) * 2
            return x

    report = depthscope.analyze(Deep(), (torch.randn(2, 8),), dynamic_shapes={"x": {0: Dim("b"), 1: Dim("n")}})
    assert report.depth == 500 * (2 * LOG_N + 3) + 500
    assert len(report.critical_path().steps) == 1000


def test_log_of_product_is_at_most_sum_of_logs():
    # ceil(log2 b) + ceil(log2 n) >= ceil(log2(b*n)): a training step's two paths collapse into one
    dom = Dominance({"b": SymbolInfo("b"), "n": SymbolInfo("n")})
    a = forms_of(clog2(b) + 7 * LOG_N + clog2(b * n) + 377)[0]
    c = forms_of(6 * LOG_N + 2 * clog2(b * n) + 377)[0]
    assert dom.dominates(a, c)
    assert not dom.dominates(c, a)


# --- the frontier stays small, and exact: checked against a longest path computed at concrete sizes ------------

from depthscope.capture.captured import capture  # noqa: E402
from depthscope.engine.analysis import formulas_of  # noqa: E402
from depthscope.engine import paths as paths_module  # noqa: E402
from depthscope.engine.walk import walk_captured  # noqa: E402
from depthscope.model_file import ModelSpec  # noqa: E402


def numeric_longest_path(walked, sizes: dict) -> int:
    """The depth at concrete sizes by dynamic programming over the graph: each node's own depth evaluated at the
    sizes, plus the deepest of its inputs. No linear forms, no pruning: an oracle for the symbolic frontier."""
    values = {size_symbol(k): v for k, v in sizes.items()}
    depth: dict = {}
    for node in walked.captured.graph_module.graph.nodes:
        rec = walked.record_of.get(node)
        own = int(evaluate(rec.cost.depth, values)) if rec is not None else 0
        depth[node] = max((depth[i] for i in node.all_input_nodes), default=0) + own
    return max(depth.values())


class ProofBudget:
    """Fails the test, instead of hanging it, once the walk has asked for more dominance proofs than `limit`."""

    def __init__(self, monkeypatch, limit: int):
        self.count, self.limit = 0, limit
        prove = paths_module.Dominance._prove

        def counted(dom, diff):
            self.count += 1
            assert self.count <= self.limit, f"more than {self.limit} dominance proofs: the frontier is blowing up"
            return prove(dom, diff)

        monkeypatch.setattr(paths_module.Dominance, "_prove", counted)


class Reductions(torch.nn.Module):
    """Stages that each reduce over one of seven axis groups of [b, n, d] (ceil(log2 n), ceil(log2(b*n*d)), ...),
    added back one after another: each stage offers seven paths with different atoms and constants, so the paths
    through S stages are the ways to pick one per stage, C(S + 6, 6) linear forms none of which dominates another
    (3003 for S = 8). Only the few on the boundary of their convex hull are ever the longest."""

    GROUPS = ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))

    def __init__(self, stages: int):
        super().__init__()
        self.stages = stages

    def forward(self, x):
        for _ in range(self.stages):
            acc = x * 0.5
            for axes in self.GROUPS:
                acc = acc + x.sum(axes, keepdim=True)
            x = torch.tanh(acc)
        return x


REDUCTION_DYN = {"x": {0: Dim("b"), 1: Dim("n"), 2: Dim("d")}}
CHECK_SIZES = [{"b": 2, "n": 2, "d": 2}, {"b": 2, "n": 4096, "d": 3}, {"b": 1000, "n": 5, "d": 70},
               {"b": 3, "n": 9, "d": 2**20}, {"b": 17, "n": 33, "d": 65}, {"b": 2**12, "n": 2**12, "d": 2}]


def _walk(model, inputs, dyn, train=False):
    return walk_captured(capture(ModelSpec(model, inputs, {}, dyn, name=type(model).__name__), train=train))


@pytest.mark.parametrize("stages", [1, 3, 8])
def test_incomparable_stages_keep_few_paths_and_the_exact_depth(stages, monkeypatch):
    budget = ProofBudget(monkeypatch, 4000 * stages)  # linear in the stages (about 2,000 each today)
    walked = _walk(Reductions(stages), (torch.randn(2, 4, 8),), REDUCTION_DYN)
    assert len(walked.final) == 7  # one path per atom group reaches the output
    depth = formulas_of(walked).depth
    for sizes in CHECK_SIZES:
        values = {size_symbol(k): v for k, v in sizes.items()}
        assert evaluate(depth, values) == numeric_longest_path(walked, sizes), sizes
    assert budget.count > 0


class Block(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = torch.nn.BatchNorm2d(cout)
        self.c2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = torch.nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.n2(self.c2(torch.relu(self.n1(self.c1(x)))))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class ResNet18Like(torch.nn.Module):
    """torchvision's resnet18 layout (7x7/2 stem, 3x3/2 max pool, four stages of two basic blocks), narrow."""

    def __init__(self, width=4):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, width, 7, 2, 3, bias=False), torch.nn.BatchNorm2d(width),
                                        torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], width
        for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            for j in range(2):
                blocks.append(Block(cin, cout, 2 if (j == 0 and i > 0) else 1))
                cin = cout
        self.blocks = torch.nn.Sequential(*blocks)
        self.fc = torch.nn.Linear(cin, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_resnet18_like_training_step_keeps_few_paths_and_the_exact_depth(monkeypatch):
    """The backward of 8 residual blocks with batch norm offered 126 incomparable paths to the old pruning (minutes of
    pairwise proofs); the walk now keeps a handful, and the depth is the longest path at every size."""
    budget = ProofBudget(monkeypatch, 20_000)  # about 2,200 today; the old pruning needed millions
    dyn = {"x": {0: Dim("b"), 2: Dim("H", min=33, max=4096), 3: Dim("W", min=33, max=4096)}}
    walked = _walk(ResNet18Like(), (torch.randn(2, 3, 64, 64),), dyn, train=True)
    assert len(walked.final) <= 16
    depth = formulas_of(walked).depth
    for sizes in [{"b": 2, "H": 33, "W": 33}, {"b": 2, "H": 4096, "W": 33}, {"b": 512, "H": 224, "W": 224},
                  {"b": 3, "H": 47, "W": 200}, {"b": 2**20, "H": 4096, "W": 4096}, {"b": 7, "H": 65, "W": 1000}]:
        values = {size_symbol(k): v for k, v in sizes.items()}
        assert evaluate(depth, values) == numeric_longest_path(walked, sizes), sizes
    assert budget.count > 0


def test_pruned_frontiers_keep_the_max_of_random_forms():
    """prune and merge (single dominance, max of two others, bounded ranges) against brute force: at every size
    tried, the max over the kept forms equals the max over all of them."""
    import random

    from depthscope.engine.paths import Entry, merge, prune

    rng = random.Random(7)
    atoms = [LOG_N, LOG_D, clog2(b), clog2(b * n), clog2(n * d), n, d]
    symbols = {"b": SymbolInfo("b", 2, 64), "n": SymbolInfo("n", 4), "d": SymbolInfo("d", 2, 2**12)}
    dom = Dominance(symbols)
    sizes = [{b: rng.choice([2, 3, 64, rng.randint(2, 64)]), n: rng.choice([4, 5, 2**20, rng.randint(4, 10**4)]),
              d: rng.choice([2, 3, 4096, rng.randint(2, 4096)])} for _ in range(60)]

    atom_values: dict = {}

    def value(form, at):
        total = 0
        for a, c in form:
            key = (a, id(at))
            if key not in atom_values:
                atom_values[key] = int(evaluate(a, at))
            total += c * atom_values[key]
        return total

    def random_form():
        expr = rng.randint(0, 40) + sum(rng.choice([0, 0, 1, 2, 3]) * a for a in rng.sample(atoms, 3))
        return forms_of(sympy.Integer(expr) if expr.is_number else expr)[0]

    for trial in range(40):
        groups = [prune([Entry(random_form()) for _ in range(rng.randint(1, 12))], dom) for _ in range(3)]
        everything = [e for g in groups for e in g]
        for kept in (merge(groups, dom), prune(everything, dom)):
            assert kept and all(k in everything for k in kept)
            for at in sizes:
                assert max(value(k.form, at) for k in kept) == max(value(e.form, at) for e in everything), trial
