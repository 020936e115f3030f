"""The cost value type: work, depth, matmul-family FLOPs, bytes moved and I/O of one op or of a composition."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from depthscope.symbols import ZERO, as_expr


@dataclass(frozen=True)
class Cost:
    """Work (unit operations), depth (longest dependent chain), matmul-family FLOPs, bytes and I/O.

    `flops` is the part of work that `torch.utils.flop_counter` counts (2 per multiply-add of
    mm/bmm/conv/attention); it is reported apart so users can compare with FLOP counters.
    `bytes` are the bytes the op reads and writes, unfused (0 from a rule: the walk fills them from the tensors);
    `io` the bytes that must move between slow memory and a fast memory of `FAST_MEMORY` bytes (default `bytes`).
    `a + b` composes in sequence (work and depth add); `a | b` in parallel (work adds, depth is the max); bytes
    and I/O add in both.
    """

    work: sympy.Expr = ZERO
    depth: sympy.Expr = ZERO
    flops: sympy.Expr = ZERO
    bytes: sympy.Expr = ZERO
    io: sympy.Expr | None = None

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
