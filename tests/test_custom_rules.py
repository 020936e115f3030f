"""Users' own rules: @depthscope.rule for custom ops, per-call overrides, clear errors, and the rules listing."""

import json

import pytest
import sympy
import torch
from torch.export import Dim

import depthscope
import depthscope.cli as cli
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
    assert by_op["aten.add.Tensor"]["depth"] == "1"
    core = {str(op) for op in aten_overloads(torch.Tag.core)}
    assert core <= set(by_op)
    assert cli.main(["rules"]) == 0
    assert "aten.mm.default" in capsys.readouterr().out
