"""Every core ATen overload has a cost rule, and every rule says in words what it counts."""

from __future__ import annotations

import torch

from depthscope.cost.rules import lookup
from depthscope.cost.registry import DESCRIPTIONS, aten_overloads, describe, modeled_ops


def test_core_aten_ops_all_have_rules():
    core = aten_overloads(torch.Tag.core)
    assert len(core) > 150, f"torch lists only {len(core)} core overloads"
    missing = [str(op) for op in core if lookup(op) is None]
    assert missing == [], "core ATen ops without a cost rule:\n  " + "\n  ".join(missing)


def test_every_rule_has_a_description():
    rules = {rule for _, rule in modeled_ops()}
    bare = sorted(f"{rule.__module__}.{rule.__name__}" for rule in rules if rule not in DESCRIPTIONS)
    assert bare == [], "rules without work/depth descriptions (register(..., work=..., depth=...)):\n  " + "\n  ".join(bare)


def test_descriptions_are_real_text():
    """Not the docstring fallback and not the '?' placeholder register() writes for a missing half."""
    for op, rule in modeled_ops():
        work, depth = describe(rule)
        assert work and depth and "?" not in (work, depth), f"{op}: {rule.__name__} -> {(work, depth)}"



class _TrainNet(torch.nn.Module):
    """Conv, batch/group/layer norm, max/avg/adaptive pooling, embedding, SDPA, activations, losses."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.gn = nn.GroupNorm(2, 8)
        self.emb = nn.Embedding(50, 16)
        self.ln = nn.LayerNorm(16)
        self.lin = nn.Linear(16, 10)

    def forward(self, x, ids, target):
        F = torch.nn.functional
        y = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        y = F.avg_pool2d(self.gn(y), 2)
        y = F.adaptive_avg_pool2d(F.gelu(y), 1).flatten(1)
        e = self.ln(self.emb(ids)).unsqueeze(1)
        a = F.scaled_dot_product_attention(e, e, e).squeeze(1)
        z = torch.tanh(a).mean(1) + F.silu(a).mean(1) * torch.sigmoid(a).mean(1)
        logits = self.lin(z) + y.sum(1, keepdim=True)
        return F.cross_entropy(logits, target) + F.mse_loss(torch.softmax(logits, -1), torch.zeros_like(logits))


def test_forward_backward_graph_ops_all_have_rules():
    """A joint forward + backward graph (decomposed to core ATen by _export_forward_backward) is fully modeled."""
    from torch.export.experimental import _export_forward_backward

    torch.manual_seed(0)
    args = (torch.randn(2, 3, 8, 8), torch.randint(0, 50, (2, 5)), torch.randint(0, 10, (2,)))
    joint = _export_forward_backward(torch.export.export(_TrainNet().train(), args))
    targets = {n.target for n in joint.graph.nodes if n.op == "call_function"}
    overloads = {t for t in targets if isinstance(t, torch._ops.OpOverload)}
    assert any("backward" in str(t) for t in overloads)
    missing = sorted(str(t) for t in overloads if lookup(t) is None)
    assert missing == [], missing
