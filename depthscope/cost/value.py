"""The cost value type: work, depth, matmul-family FLOPs, bytes moved and I/O of one op or of a composition."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from depthscope.symbols import ZERO, as_expr


@dataclass(frozen=True)
class Cost:
    """Work, depth, matmul-family FLOPs (as flop_counter counts them), bytes moved and I/O of an op or composition.

    `a + b` in sequence (work and depth add), `a | b` in parallel (depth is the max); the rest add in both."""

    work: sympy.Expr = ZERO
    depth: sympy.Expr = ZERO
    flops: sympy.Expr = ZERO
    bytes: sympy.Expr = ZERO  # read + written, unfused; 0 from a rule: the walk counts them from the tensors
    io: sympy.Expr | None = None  # bytes to and from a fast memory of FAST_MEMORY bytes; None: equal to `bytes`

    def __post_init__(self):
        for part in ("work", "depth", "flops", "bytes"):
            object.__setattr__(self, part, as_expr(getattr(self, part)))
        object.__setattr__(self, "io", self.bytes if self.io is None else as_expr(self.io))

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.work + other.work, self.depth + other.depth, self.flops + other.flops,
                    self.bytes + other.bytes, self.io + other.io)

    def __or__(self, other: Cost) -> Cost:
        return Cost(self.work + other.work, sympy.Max(self.depth, other.depth), self.flops + other.flops,
                    self.bytes + other.bytes, self.io + other.io)

    def __mul__(self, times) -> Cost:
        """Repeat in sequence `times` times."""
        times = as_expr(times)
        return Cost(self.work * times, self.depth * times, self.flops * times, self.bytes * times, self.io * times)

    __rmul__ = __mul__

    @property
    def is_zero(self) -> bool:
        return self.work == 0 and self.depth == 0


FREE = Cost()
