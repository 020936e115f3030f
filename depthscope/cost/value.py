"""The cost value type: work, depth and matmul-family FLOPs of one op or of a composition."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from depthscope.symbols import ZERO, as_expr


@dataclass(frozen=True)
class Cost:
    """Work (unit operations), depth (longest dependent chain) and matmul-family FLOPs.

    `flops` is the part of work that `torch.utils.flop_counter` counts (2 per multiply-add of
    mm/bmm/conv/attention); it is reported apart so users can compare with FLOP counters.
    `a + b` composes in sequence (work and depth add); `a | b` in parallel (work adds, depth is the max).
    """

    work: sympy.Expr = ZERO
    depth: sympy.Expr = ZERO
    flops: sympy.Expr = ZERO

    def __post_init__(self):
        object.__setattr__(self, "work", as_expr(self.work))
        object.__setattr__(self, "depth", as_expr(self.depth))
        object.__setattr__(self, "flops", as_expr(self.flops))

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.work + other.work, self.depth + other.depth, self.flops + other.flops)

    def __or__(self, other: Cost) -> Cost:
        return Cost(self.work + other.work, sympy.Max(self.depth, other.depth), self.flops + other.flops)

    def __mul__(self, times) -> Cost:
        """Repeat in sequence `times` times."""
        times = as_expr(times)
        return Cost(self.work * times, self.depth * times, self.flops * times)

    __rmul__ = __mul__

    @property
    def is_zero(self) -> bool:
        return self.work == 0 and self.depth == 0


FREE = Cost()
