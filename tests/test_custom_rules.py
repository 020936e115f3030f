"""Users' own rules: @depthscope.rule for custom ops, per-call overrides, clear errors, and the rules listing."""

import json

import pytest
import sympy
import torch
from torch.export import Dim

import depthscope
import depthscope.cli as cli
from depthscope.errors import RuleError
from depthscope.cost.registry import RULES, USER_RULES, aten_overloads, resolve_op
from depthscope.symbols import clog2, size_symbol

n = size_symbol("n")


@torch.library.custom_op("depthscope_rules_test::segment_sum", mutates_args=())
def segment_sum(x: torch.Tensor) -> torch.Tensor:
    return x.sum(-1)


@segment_sum.register_fake
def _(x):
    return x.new_empty(x.shape[:-1])


class UsesCustom(torch.nn.Module):
    def forward(self, x):
        return segment_sum(x) * 2


def _analyze(**kw):
    return depthscope.analyze(UsesCustom(), (torch.randn(3, 8),), dynamic_shapes={"x": {1: Dim("n")}}, **kw)


@pytest.fixture
def registered():
    """Register a rule for the custom op and remove it afterwards (the registry is global)."""

    @depthscope.rule(segment_sum, work="numel(x)", depth="ceil(log2 k)")
    def segment_sum_rule(call):
        x = call.args[0]
        return depthscope.Cost(x.numel, clog2(x.shape[-1]))

    yield segment_sum_rule
    for op in resolve_op(segment_sum):
        RULES.pop(op, None)
    USER_RULES.discard(segment_sum_rule)


def test_custom_op_is_unmodeled_without_a_rule():
    report = _analyze()
    assert report.unmodeled == (("depthscope_rules_test.segment_sum.default", 1),)


def test_registered_rule_models_the_custom_op(registered):
    report = _analyze()
    assert report.unmodeled == ()
    assert sympy.expand(report.work - (3 * n + 3)) == 0
    assert report.depth == clog2(n) + 1


def test_duplicate_registration_is_an_error(registered):
    with pytest.raises(ValueError, match="duplicate cost rule"):
        depthscope.rule(segment_sum)(lambda call: depthscope.Cost(1, 1))
    with pytest.raises(ValueError, match="duplicate cost rule"):
        depthscope.rule(torch.ops.aten.mm.default)(lambda call: depthscope.Cost(1, 1))


def test_per_call_override_leaves_the_registry_alone():
    def tuple_rule(call):
        return call.args[0].numel * 10, 7  # a (work, depth) pair is accepted

    report = _analyze(rules={"depthscope_rules_test::segment_sum": tuple_rule})
    assert sympy.expand(report.work - (30 * n + 3)) == 0 and report.depth == 8
    assert torch.ops.depthscope_rules_test.segment_sum.default not in RULES


def test_override_replaces_a_builtin_rule_for_one_call():
    class Sum(torch.nn.Module):
        def forward(self, x):
            return x.sum(-1)

    args = (Sum(), (torch.randn(3, 8),))
    report = depthscope.analyze(*args, dynamic_shapes={"x": {1: Dim("n")}},
                                rules={torch.ops.aten.sum: lambda call: depthscope.Cost(call.args[0].numel, 1)})
    assert report.depth == 1
    assert depthscope.analyze(*args, dynamic_shapes={"x": {1: Dim("n")}}).depth == clog2(n)


@pytest.mark.parametrize("rules,fragment", [
    ({"aten::no_such_op": lambda c: (1, 1)}, "no such op"),
    ({"not an op": lambda c: (1, 1)}, "not an op name"),
    ({"aten::mm": 3}, "not callable"),
], ids=["unknown-op", "bad-name", "not-callable"])
def test_bad_override_is_an_input_error(rules, fragment):
    with pytest.raises(depthscope.InputError, match=fragment):
        _analyze(rules=rules)


def test_failing_custom_rule_names_the_op():
    def broken(call):
        raise KeyError("oops")

    with pytest.raises(depthscope.InputError, match="custom rule broken for depthscope_rules_test.segment_sum.default"):
        _analyze(rules={segment_sum: broken})


def test_rule_returning_garbage_is_an_input_error():
    with pytest.raises(depthscope.InputError, match="must return a Cost"):
        _analyze(rules={segment_sum: lambda call: "cheap"})


def test_rules_command_lists_every_modeled_op(capsys):
    assert cli.main(["rules", "--format", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_op = {row["op"]: row for row in listing}
    assert set(listing[0]) == {"op", "work", "depth"}
    assert by_op["aten.mm.default"]["depth"].startswith("1 + ceil(log2")
    assert by_op["aten.view.default"] == {"op": "aten.view.default", "work": "0", "depth": "0"}
    assert by_op["aten.add.Tensor"]["depth"].startswith("1")
    assert by_op["aten.hardswish_.default"] == {**by_op["aten.hardswish.default"], "op": "aten.hardswish_.default"}
    core = {str(op) for op in aten_overloads(torch.Tag.core)}
    assert core <= set(by_op)
    assert cli.main(["rules"]) == 0
    assert "aten.mm.default" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# A rule's result is validated: exact (integer or rational constants, size symbols, +, *, integer powers, Max,
# Min, floor, ceiling, Mod, ceil(log2 x)), finite and non-negative. Anything else is a clear error naming the rule
# and the node: exit 2 for the user's rules, 101 for depthscope's own.

k_stray = size_symbol("k_not_in_graph")

INVALID_RESULTS = [
    ("log-ratio-constant", lambda x: (x.numel, sympy.log(8) / sympy.log(2)), "depth", "not rational"),
    ("sqrt-two", lambda x: (x.numel, sympy.sqrt(2)), "depth", "not rational"),
    ("sqrt-of-size", lambda x: (x.numel, sympy.sqrt(x.shape[-1])), "depth", "non-integer exponent"),
    ("bare-log-of-size", lambda x: (x.numel, sympy.log(x.shape[-1])), "depth", "not rational"),
    ("log2-without-ceiling", lambda x: (x.numel, sympy.log(x.shape[-1], 2)), "depth", "not rational"),
    ("negative-constant", lambda x: (x.numel, -1), "depth", "negative"),
    ("negative-work-at-small-sizes", lambda x: (x.shape[-1] - 100, 1), "work", "negative"),
    ("negative-flops", lambda x: (x.numel, 1, -x.numel), "flops", "negative"),
    ("nan", lambda x: (x.numel, sympy.nan), "depth", "not finite"),
    ("float-nan", lambda x: (x.numel, float("nan")), "depth", "not finite"),
    ("infinity", lambda x: (sympy.oo, 1), "work", "not finite"),
    ("complex-infinity", lambda x: (x.numel, sympy.zoo), "depth", "not finite"),
    ("division-by-zero-at-some-size", lambda x: (x.numel, 1 / (x.shape[-1] - 2) ** 2), "depth", "not finite"),
    ("python-float", lambda x: (x.numel, 2.5), "depth", "float"),
    ("sympy-float-in-expression", lambda x: (x.numel * sympy.Float(0.5), 1), "work", "float"),
    ("pi", lambda x: (x.numel, sympy.pi), "depth", "not rational"),
    ("imaginary", lambda x: (x.numel, sympy.I), "depth", "not rational"),
    ("symbol-without-assumptions", lambda x: (x.numel, sympy.Symbol("n")), "depth", "not a size"),
    ("size-symbol-not-in-graph", lambda x: (x.numel, clog2(k_stray)), "depth", "not a size of this graph"),
    ("sympy-boolean", lambda x: (x.numel, sympy.true), "depth", "not a sympy expression"),
    ("unknown-function", lambda x: (x.numel, sympy.gamma(x.shape[-1])), "depth", "gamma"),
    ("non-sympy-object", lambda x: (x.numel, object()), "", "expected a number or a sympy expression"),
    ("string", lambda x: (x.numel, "ceil(log2 n)"), "", "expected a number or a sympy expression"),
    ("wrong-tuple-length", lambda x: (x.numel,), "", "must return a Cost"),
    ("none", lambda x: None, "", "must return a Cost"),
]


@pytest.mark.parametrize("make, part, fragment", [pytest.param(*c[1:], id=c[0]) for c in INVALID_RESULTS])
def test_invalid_custom_rule_result_names_rule_and_node(make, part, fragment):
    def my_segment_rule(call):
        return make(call.args[0])

    with pytest.raises(depthscope.InputError) as info:
        _analyze(rules={segment_sum: my_segment_rule})
    message = str(info.value)
    assert "custom rule my_segment_rule for depthscope_rules_test.segment_sum.default (node segment_sum)" in message
    assert fragment in message
    if part:
        assert f"{part} = " in message
    assert info.value.exit_code == 2


VALID_RESULTS = [
    ("ceil-log2-of-product", lambda x: (x.numel, clog2(3 * x.shape[-1])), None),
    ("rational", lambda x: (x.numel / 2, sympy.Rational(3, 2)), None),
    ("max-min-floor-mod", lambda x: (sympy.Max(x.numel, 5), sympy.Min(x.shape[-1], 3) + sympy.floor(x.shape[-1] / 3)
                                     + sympy.Mod(x.shape[-1], 2)), None),
    ("difference-non-negative-in-range", lambda x: (x.shape[-1] - 1, 1), None),
    ("floor-log2", lambda x: (x.numel, sympy.floor(sympy.log(x.shape[-1]) / sympy.log(2))), None),
    ("integral-float-zero-cost", lambda x: depthscope.Cost(), None),
]


@pytest.mark.parametrize("make, _", [pytest.param(*c[1:], id=c[0]) for c in VALID_RESULTS])
def test_valid_results_pass(make, _):
    report = _analyze(rules={segment_sum: lambda call: make(call.args[0])})
    assert report.evaluate(n=37)["depth"] >= 1


def _builtin_broken(result):
    """A rule for aten.mul returning `result`, as a depthscope bug would."""

    def mul_rule(call):
        return result

    return torch.ops.aten.mul.Tensor, None, mul_rule


@pytest.mark.parametrize("result", [(1, sympy.sqrt(2)), (1, -3), (1, 0.5), "garbage"],
                         ids=["sqrt", "neg", "float", "str"])
def test_invalid_builtin_rule_result_is_an_internal_error(monkeypatch, result):
    op, _, bad = _builtin_broken(result)
    monkeypatch.setitem(RULES, op, bad)
    with pytest.raises(RuleError) as info:
        _analyze(rules={segment_sum: lambda call: (1, 1)})
    assert "built-in rule mul_rule for aten.mul.Tensor (node mul)" in str(info.value)
    assert info.value.exit_code == 101


BAD_RULE_FILE = '''
import sympy
import torch
from torch.export import Dim
import depthscope

@torch.library.custom_op("depthscope_cli_rules::twice", mutates_args=())
def twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2

@twice.register_fake
def _(x):
    return torch.empty_like(x)

@depthscope.rule(twice)
def twice_cost(call):
    return call.args[0].numel, {depth}

class M(torch.nn.Module):
    def forward(self, x):
        return twice(x) + 1

model = M
example_inputs = (torch.randn(2, 16),)
dynamic_shapes = {{"x": {{1: Dim("n")}}}}
'''


@pytest.mark.parametrize("depth", ["sympy.log(8) / sympy.log(2)", "sympy.sqrt(2)", "-1", "float('nan')", "1.5",
                                   "object()"])
def test_cli_invalid_user_rule_is_exit_2_naming_rule_and_node(tmp_path, capsys, depth):
    path = tmp_path / "bad_rule_model.py"
    path.write_text(BAD_RULE_FILE.format(depth=depth))
    try:
        code = cli.main(["analyze", str(path)])
    finally:
        for op in resolve_op(torch.ops.depthscope_cli_rules.twice):
            fn = RULES.pop(op, None)
            USER_RULES.discard(fn)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "twice_cost" in err and "node twice" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Hostile results: negative only somewhere in the range, objects that dodge Cost's conversion


class _SneakyCost(depthscope.Cost):
    """A Cost whose fields are set after construction, past its conversion to sympy."""


def _sneaky(work, depth):
    cost = _SneakyCost(1, 1)
    object.__setattr__(cost, "work", work)
    object.__setattr__(cost, "depth", depth)
    return cost


@pytest.mark.parametrize("make, fragment", [
    (lambda x: (10**7 - x.shape[-1], 1), "negative"),            # negative only for n > 10^7
    (lambda x: (x.numel, (x.shape[-1] - 5) * (x.shape[-1] - 7)), "negative"),  # negative only at n = 6
    (lambda x: _sneaky(x.numel, 2.5), "float"),
    (lambda x: _sneaky("n", 1), "not a sympy expression"),
    (lambda x: _sneaky(x.numel, sympy.Piecewise((1, x.shape[-1] > 3), (2, True))), "Piecewise"),
], ids=["negative-beyond-1e7", "negative-between-samples", "float-set-after", "string-set-after", "piecewise"])
def test_hostile_results_are_refused(make, fragment):
    with pytest.raises(depthscope.InputError, match=fragment):
        _analyze(rules={segment_sum: lambda call: make(call.args[0])})


def test_non_negative_differences_pass():
    report = _analyze(rules={segment_sum: lambda call: (sympy.Max(call.args[0].shape[-1] - 100, 0) + 1, 1)})
    assert report.evaluate(n=500)["work"] == 401 + 3


class InPlaceRelu(torch.nn.Module):
    def forward(self, x):
        return torch.relu_(x * 2)


def test_override_of_the_functional_op_applies_to_its_in_place_variant():
    args = (InPlaceRelu(), (torch.randn(3, 8),))
    shapes = {"x": {1: Dim("n")}}
    plain = depthscope.analyze(*args, dynamic_shapes=shapes)
    assert plain.unmodeled == () and plain.depth == 2
    report = depthscope.analyze(*args, dynamic_shapes=shapes, rules={"aten::relu": lambda call: (call.out.numel, 5)})
    assert report.depth == 6


def test_invalid_override_on_an_in_place_op_names_it():
    args = (InPlaceRelu(), (torch.randn(3, 8),))
    with pytest.raises(depthscope.InputError, match=r"custom rule .* for aten\.relu_\.default \(node relu_\)"):
        depthscope.analyze(*args, dynamic_shapes={"x": {1: Dim("n")}},
                           rules={torch.ops.aten.relu.default: lambda call: (1, sympy.sqrt(2))})


@torch.library.custom_op("depthscope_rules_test::bump_", mutates_args=("x",))
def bump_(x: torch.Tensor) -> None:
    x.add_(1)


def test_a_mutating_custom_op_without_functional_twin_can_have_a_rule():
    fn = depthscope.rule(bump_, work="numel", depth="1")(lambda call: (call.args[0].numel, 1))
    try:
        assert RULES[torch.ops.depthscope_rules_test.bump_.default] is fn
    finally:
        RULES.pop(torch.ops.depthscope_rules_test.bump_.default, None)
        USER_RULES.discard(fn)
