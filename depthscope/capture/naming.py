"""Name export's symbols (s27, ...) after the user's Dims, with their ranges; SymInts as user expressions."""

from __future__ import annotations

import re

import sympy
import torch

from depthscope.symbols import SymbolInfo, from_torch, size_symbol


def _collect_dims(spec, found: dict) -> dict:
    """Every Dim object in a dynamic_shapes spec, by name."""
    if spec is None:
        return found
    if isinstance(spec, dict):
        for v in spec.values():
            _collect_dims(v, found)
    elif isinstance(spec, (list, tuple)):
        for v in spec:
            _collect_dims(v, found)
    elif hasattr(spec, "__name__") and type(spec).__name__ not in {"function", "type"}:
        found[spec.__name__] = spec
    return found


def _shape_env(program):
    for node in program.graph.nodes:
        val = node.meta.get("val")
        env = getattr(getattr(val, "fake_mode", None), "shape_env", None)
        if env is not None:
            return env
    return None


def _source_name(source) -> str:
    name = source.name
    return name() if callable(name) else name


def user_symbols(program, dynamic_shapes):
    env = _shape_env(program)
    if env is None:
        return {}, {}
    dims = _collect_dims(dynamic_shapes, {})
    debug_names = getattr(env, "source_name_to_debug_name", {}) or {}
    rename: dict[sympy.Symbol, sympy.Expr] = {}
    fallback: dict[sympy.Symbol, str] = {}
    for sym, sources in env.var_to_sources.items():
        for source in sources:
            sname = _source_name(source)
            debug = debug_names.get(sname)
            target = env.replace(sym)
            if debug and debug.isidentifier() and isinstance(target, sympy.Symbol):
                rename.setdefault(target, size_symbol(debug))
            elif debug and debug in dims and getattr(dims[debug], "root", None) is not None:
                free = list(target.free_symbols)
                if len(free) == 1:
                    rename.setdefault(free[0], size_symbol(dims[debug].root.__name__))
            if isinstance(target, sympy.Symbol):
                fallback.setdefault(target, _name_from_source(sname))
    for sym, name in fallback.items():
        if sym not in rename:
            rename[sym] = size_symbol(name)
    symbols: dict[str, SymbolInfo] = {}
    for sym, user in rename.items():
        lo, hi = 2, None
        vr = env.var_to_range.get(sym)
        if vr is not None:
            try:
                lo = max(2, int(vr.lower))
            except (TypeError, ValueError, OverflowError):
                lo = 2
            try:
                hi = int(vr.upper) if vr.upper.is_finite else None
            except (TypeError, ValueError, OverflowError, AttributeError):
                hi = None
        name = str(user)
        prev = symbols.get(name)
        if prev is not None:
            lo = max(lo, prev.min)
            hi = hi if prev.max is None else (prev.max if hi is None else min(hi, prev.max))
        symbols[name] = SymbolInfo(name, lo, hi)
    return rename, symbols


def _name_from_source(sname: str) -> str:
    """L['x'].size()[1] -> x_dim1, for dims the user left unnamed."""
    m = re.match(r"L\['(\w+)'\]\.size\(\)\[(\d+)\]", sname)
    if m:
        return f"{m.group(1)}_dim{m.group(2)}"
    cleaned = re.sub(r"\W+", "_", sname).strip("_")
    return cleaned or "s"


def to_user_expr(value, rename, cache: dict) -> sympy.Expr:
    if isinstance(value, bool):
        return sympy.Integer(int(value))
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, torch.SymInt):
        node = value.node
        expr = node.expr
        env = getattr(node, "shape_env", None)
        hit = cache.get(expr)
        if hit is not None:
            return hit
        out = from_torch(env.replace(expr) if env is not None else expr, rename)
        cache[node.expr] = out
        return out
    if isinstance(value, sympy.Basic):
        return from_torch(value, rename)
    if isinstance(value, float):
        return sympy.Float(value)
    raise TypeError(f"not a size: {value!r}")
