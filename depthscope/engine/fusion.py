"""bytes_fused: an Inductor-like estimate of the bytes a model moves when pointwise ops and reductions fuse.

Kernels form in graph order: a fusible op joins the kernel of one of its producers when that makes no cycle (no
path leaves the kernel and comes back), else it starts one. A kernel reads each tensor entering it from outside
once and writes each tensor it makes that leaves it (or that nothing reads); views are free; every other op
(matmul, convolution, attention, sort, FFT, scans, gathers and scatters, higher-order ops, custom and unmodeled
ops) is a kernel of its own and moves its unfused bytes. The rule and its limits: docs/cost-model.md.
"""

from __future__ import annotations

import functools
import operator

import sympy
import torch

from depthscope.cost.traffic import nbytes
from depthscope.cost.variants import functional_of

# reductions, normalisations and copies Inductor generates as (fusible) loops; ops torch tags pointwise fuse too
FUSIBLE = frozenset("""
    sum mean amax amin max min prod var std var_mean std_mean argmax argmin any all norm linalg_vector_norm logsumexp
    softmax _softmax log_softmax _log_softmax _safe_softmax layer_norm native_layer_norm group_norm native_group_norm
    rms_norm _fused_rms_norm batch_norm _native_batch_norm_legit_no_training instance_norm dropout native_dropout
    clone contiguous _to_copy to copy cat stack where masked_fill fill zeros ones full zeros_like ones_like full_like
    arange scalar_tensor lift_fresh_copy constant_pad_nd pad tril triu repeat flip roll avg_pool1d avg_pool2d
    avg_pool3d max_pool1d max_pool2d max_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
    _adaptive_avg_pool2d upsample_nearest1d upsample_nearest2d upsample_nearest3d upsample_bilinear2d
    upsample_linear1d rand rand_like randn randn_like bernoulli
""".split())


@functools.lru_cache(maxsize=None)
def fusible(op) -> bool:
    """Whether an op fuses with its neighbours: ATen pointwise ops (and their in-place forms), reductions, norms."""
    if not isinstance(op, torch._ops.OpOverload):
        return False
    functional = functional_of(op) or op
    namespace, _, name = functional._schema.name.partition("::")
    return namespace == "aten" and (torch.Tag.pointwise in functional.tags or name in FUSIBLE)


def _kind(node, moves) -> str:
    """"hop", "meta" (no tensor: shape arithmetic, sizes, assertions), "view" (a view or a selected output: it
    stands for the tensor it comes from) or "op"."""
    if isinstance(node.target, torch._ops.HigherOrderOperator):
        return "hop"
    vals = node.meta.get("val")
    vals = vals if isinstance(vals, (list, tuple)) else (vals,)
    if not any(isinstance(v, torch.Tensor) for v in vals):
        return "meta"
    m = moves.get(node)
    return "view" if m is None or (all(m.aliased) and not m.mutated) else "op"


class _Kernels:
    """Kernel membership (group ids) and, per node, the set of kernels it depends on (an int used as a bitset)."""

    def __init__(self):
        self.group: dict = {}
        self.ancestors: dict = {}
        self.count = 0

    def depends(self, node) -> int:
        out = 0
        for i in node.all_input_nodes:
            out |= self.ancestors.get(i, 0)
            g = self.group.get(i)
            if g is not None:
                out |= 1 << g
        return out

    def place(self, node, fuse: bool, base=None) -> None:
        self.ancestors[node] = self.depends(node)
        if base is not None:  # transparent: the tensor it comes from
            if self.group.get(base) is not None:
                self.group[node] = self.group[base]
            return
        if not fuse:
            return
        for i in node.all_input_nodes:
            g = self.group.get(i)
            if g is not None and not any(self.group.get(j) != g and self.ancestors.get(j, 0) >> g & 1
                                         for j in node.all_input_nodes):
                self.group[node] = g
                return
        self.group[node] = self.count
        self.count += 1


def _consumers(node, kinds) -> list:
    """The nodes that use a tensor, looking through views and selected outputs (sizes read from it do not count)."""
    out = []
    for user in node.users:
        kind = kinds.get(user)
        if kind == "view":
            out.extend(_consumers(user, kinds))
        elif kind != "meta":
            out.append(user)
    return out


def _output_nodes(node, index: int, single: bool) -> list:
    """The nodes that stand for output `index` of a node: the node itself, or its getitem users."""
    if single:
        return [node]
    return [u for u in node.users if u.target is operator.getitem and u.args[1] == index]


def bytes_fused(walked) -> sympy.Expr:
    """The estimate for the top-level graph of a walk (higher-order ops count their unfused bytes)."""
    moves = walked.moves
    kernels = _Kernels()
    boundary, members, kinds = [], [], {}
    for node in walked.captured.graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        kind = kinds[node] = _kind(node, moves)
        if kind == "meta":
            continue  # depends on sizes only, known before anything runs
        if kind == "view":
            base = node.args[0] if node.args and isinstance(node.args[0], torch.fx.Node) else None
            kernels.place(node, False, base)
            continue
        kernels.place(node, kind == "op" and fusible(node.target))
        (members if node in kernels.group else boundary).append(node)
    total = sympy.Add(*[_unfused(node, walked) for node in boundary])
    reads: dict = {}
    for node in members:
        g = kernels.group[node]
        m = moves[node]
        for i, meta in m.reads:
            if kernels.group.get(i) != g:
                reads[(g, i)] = nbytes(meta)
        for j, (meta, alias) in enumerate(zip(m.outputs, m.aliased)):
            if alias:
                continue
            users = [u for n in _output_nodes(node, j, len(m.outputs) == 1) for u in _consumers(n, kinds)]
            if not users or any(u.op != "call_function" or kernels.group.get(u) != g for u in users):
                total += nbytes(meta)
        total += sympy.Add(*[nbytes(meta) for _, meta in m.mutated])
    return sympy.expand(total + sympy.Add(*reads.values()))


def _unfused(node, walked) -> sympy.Expr:
    rec = walked.record_of.get(node)
    if rec is not None:
        return rec.cost.bytes
    prefix = node.name + "/"  # a wrapper (grad mode, autocast): its subgraph's nodes are recorded inline
    return sympy.Add(*[r.cost.bytes for r in walked.records if r.name.startswith(prefix)])


__all__ = ["FUSIBLE", "bytes_fused", "fusible"]
