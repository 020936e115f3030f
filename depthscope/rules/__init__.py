"""Per-op cost rules, one module per op family; importing this package fills the registry."""

from . import attention, conv, elementwise, indexing, matmul, norm, pooling, reduction, shape  # noqa: F401
from .registry import FREE_OPS, RULES, OpCall, TensorMeta, free, lookup, register, register_free, unmodeled

__all__ = ["FREE_OPS", "RULES", "OpCall", "TensorMeta", "free", "lookup", "register", "register_free", "unmodeled"]
