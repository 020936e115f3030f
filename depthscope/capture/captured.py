"""The captured program: an exported graph with the user's symbols, and `capture(spec)` that makes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sympy
import torch

from depthscope.capture.export import export_model
from depthscope.capture.naming import to_user_expr, user_symbols
from depthscope.model_file import ModelSpec
from depthscope.symbols import SymbolInfo, size_symbol


@dataclass
class Captured:
    """An exported program with its graph, the user's symbols and the map from export's symbols to them."""

    program: Any
    graph_module: torch.fx.GraphModule
    symbols: dict[str, SymbolInfo]
    rename: dict[sympy.Symbol, sympy.Expr]
    name: str = "model"
    mode: str = "inference"  # or "train": forward and backward
    _cache: dict = field(default_factory=dict, repr=False)
    unbacked: list = field(default_factory=list)  # (name, what) of data-dependent sizes met in the graph

    def expr(self, value) -> sympy.Expr:
        """A SymInt, int or sympy value as a sympy expression over the user's symbols.

        A data-dependent size (torch's unbacked u0 from nonzero, item, ...) becomes a size symbol of its own,
        recorded in `unbacked` and `symbols` (assumed >= 1), so formulas stay exact in it.
        """
        out = to_user_expr(value, self.rename, self._cache)
        known = self.rename.values()
        stray = [s for s in out.free_symbols if s not in known]
        if stray:
            for sym in stray:
                name = str(sym)
                self.rename[sym] = size_symbol(name)
                self.symbols.setdefault(name, SymbolInfo(name, 1, None))
                self.unbacked.append((name, "a data-dependent size (known only when the model runs)"))
            self._cache.clear()
            out = to_user_expr(value, self.rename, self._cache)
        return out



def capture(spec: ModelSpec, train: bool = False) -> Captured:
    """Export the model and map export's symbols (s27, ...) to the user's Dim names with their bounds."""
    program = export_model(spec, train=train)
    gm = program.graph_module
    rename, symbols = user_symbols(program, spec.dynamic_shapes)
    return Captured(program, gm, symbols, rename, name=spec.name, mode="train" if train else "inference")


