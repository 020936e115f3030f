"""Cost: the Cost value, the op-rule registry and the rules (one module per op family)."""

from depthscope.cost.value import FREE, Cost

__all__ = ["FREE", "Cost"]
