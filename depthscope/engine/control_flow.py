"""Higher-order ops: grad-mode wrappers, cond, scan, map, associative_scan and while_loop, costed from their bodies."""

from __future__ import annotations

import sympy

from depthscope.cost.value import Cost
from depthscope.engine.paths import Dominance, add_forms, prune
from depthscope.engine.nodes import NodeCost, Outputs, body_total, module_of
from depthscope.symbols import SymbolInfo, clog2, size_symbol

# Higher-order ops that only wrap a subgraph (grad mode, autocast): cost = the subgraph's cost.
WRAPPER_HOPS = {"wrap_with_set_grad_enabled", "wrap_with_autocast", "wrap", "tag_activation_checkpoint",
                "autograd_function_apply"}


def _hop_wrapper(walker, node, frontier, gm, prefix, records):
    """Grad-mode and autocast wrappers: the subgraph runs once, inline."""
    for i, a in enumerate(node.args):
        sub = walker.subgraph(gm, a)
        if sub is not None:
            args = [walker.frontier_of(x, frontier) for x in node.args[i + 1 :]]
            return Outputs(walker.walk(sub, args, f"{prefix}{node.name}/", records))
    return None


def _hop_cond(walker, node, frontier, gm, prefix, records):
    """torch.cond: the predicate first, then one branch. Depth: the deeper branch; work: the larger branch."""
    pred, true_arg, false_arg, operands = node.args[:4]
    branches = [walker.subgraph(gm, true_arg), walker.subgraph(gm, false_arg)]
    if None in branches:
        return None
    pred_f = walker.frontier_of(pred, frontier)
    args = [prune(walker.frontier_of(o, frontier) + pred_f, walker.dom) for o in operands]
    costs, outputs = [], []
    for label, sub in zip(("true", "false"), branches):
        scratch: list = []
        outputs.append(walker.walk(sub, args, f"{prefix}{node.name}.{label}/", scratch))
        costs.append(body_total(scratch))
    # the larger branch in each (one of them runs; which one is known only when the model runs)
    parts = ("work", "depth", "flops", "bytes", "io")
    cost = Cost(*[sympy.Max(getattr(costs[0], p), getattr(costs[1], p)) for p in parts])
    module, mtype = module_of(node)
    rec = NodeCost(prefix + node.name, "higher_order.cond", module, mtype, cost, "modeled", cost.bytes)
    records.append(rec)
    walker.record_of[node] = rec
    merged = [prune(a + b, walker.dom) for a, b in zip(*outputs)]
    return Outputs(merged)


def _hop_scan(walker, node, frontier, gm, prefix, records):
    """scan: the body runs once per element of the scanned axis, each step after the previous (depth T x body)."""
    body_arg, init, xs = node.args[:3]
    sub = walker.subgraph(gm, body_arg)
    if sub is None or not xs:
        return None
    trips = walker.coster.node_meta(xs[0]).shape[0]
    body, forms = walker.body_cost(sub, f"{prefix}{node.name}/")
    return walker.repeated(node, frontier, prefix, records, body, forms, trips, trips, "higher_order.scan")


def _hop_map(walker, node, frontier, gm, prefix, records):
    """map: the body runs once per element of the mapped axis, all in parallel (depth of one body)."""
    body_arg, xs = node.args[:2]
    sub = walker.subgraph(gm, body_arg)
    if sub is None or not xs:
        return None
    trips = walker.coster.node_meta(xs[0]).shape[0]
    body, forms = walker.body_cost(sub, f"{prefix}{node.name}/")
    return walker.repeated(node, frontier, prefix, records, body, forms, trips, 1, "higher_order.map")


def _hop_associative_scan(walker, node, frontier, gm, prefix, records):
    """associative_scan over n: a work-efficient (Blelloch) tree, 2(n-1) combines in 2 ceil(log2 n) levels.

    The node is torch's higher-order op, also for combine_mode="generic": during capture the stand-in
    (depthscope.capture.standins) lowers that call to it, with the combine function traced on element-shaped
    inputs as its subgraph, in the capture's own symbols. The scanned dim is 0 (torch moves it there first)."""
    body_arg, xs = node.args[:2]
    sub = walker.subgraph(gm, body_arg)
    if sub is None or not xs:
        return None
    dim = node.args[2] if len(node.args) > 2 and isinstance(node.args[2], int) else 0
    n = walker.coster.node_meta(xs[0]).shape[dim]
    body, forms = walker.body_cost(sub, f"{prefix}{node.name}/")
    return walker.repeated(node, frontier, prefix, records, body, forms, 2 * (n - 1), 2 * clog2(n),
                           "higher_order.associative_scan")


def _hop_while_loop(walker, node, frontier, gm, prefix, records):
    """while_loop: the trip count is unknown statically; it becomes a named symbol in every formula."""
    cond_arg, body_arg = node.args[:2]
    cond_gm, body_gm = walker.subgraph(gm, cond_arg), walker.subgraph(gm, body_arg)
    if cond_gm is None or body_gm is None:
        return None
    name = f"{node.name}_trips"
    walker.captured.symbols[name] = SymbolInfo(name, 1, None)
    walker.dom = Dominance(walker.captured.symbols)
    walker.unknowns.append((name, f"trip count of {prefix}{node.name} (torch.while_loop), unknown before running"))
    trips = size_symbol(name)
    cond, cond_forms = walker.body_cost(cond_gm, f"{prefix}{node.name}.cond/")
    body, body_forms = walker.body_cost(body_gm, f"{prefix}{node.name}.body/")
    step = Cost(cond.work + body.work, 0, cond.flops + body.flops)
    forms = [add_forms(c, b) for c in cond_forms for b in body_forms]
    return walker.repeated(node, frontier, prefix, records, step, forms, trips, trips, "higher_order.while_loop")


# higher-order op name -> handler(walker, node, frontier, gm, prefix, records); the walker is engine.walk.Walker
HOP_HANDLERS = {name: _hop_wrapper for name in WRAPPER_HOPS}
HOP_HANDLERS.update(cond=_hop_cond, scan=_hop_scan, map_impl=_hop_map, map=_hop_map,
                     associative_scan=_hop_associative_scan, while_loop=_hop_while_loop)

