"""Per-op cost rules, one module per op family; importing this package fills the registry."""

from depthscope.cost.rules import (  # noqa: F401
    attention,
    backward,
    conv,
    distance,
    elementwise,
    fft,
    indexing,
    losses,
    matmul,
    norm,
    pooling,
    recurrent,
    reduction,
    resample,
    shape,
    sorting,
)
from depthscope.cost.registry import FREE_OPS, RULES, OpCall, TensorMeta, free, lookup, register, register_free, unmodeled

__all__ = ["FREE_OPS", "RULES", "OpCall", "TensorMeta", "free", "lookup", "register", "register_free", "unmodeled"]
