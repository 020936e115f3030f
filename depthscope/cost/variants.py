"""In-place (`op_`) and `out=` overloads, resolved by schema to the functional overload whose rule they share.

An in-place overload `aten.<name>_.<o>` writes its first argument; an `out=` overload takes keyword-only arguments
it writes (`out`, or `values` and `indices`, ...). Either computes what the functional overload computes, so it
takes that overload's rule: the functional overload is the non-mutating overload of `aten.<name>` (`__iand__`:
`__and__`) with the same arguments once the written keyword-only ones are dropped (names and types; alias
annotations aside; the first argument by type, and a factory's `out=` overload lacks the tensor options
`dtype`, `layout`, `device`, `pin_memory` that `out` fixes). Nothing is registered per variant: the registry
looks variants up here.
"""

from __future__ import annotations

import functools

import torch


def _writes(arg) -> bool:
    info = arg.alias_info
    return info is not None and info.is_write


# Tensor options a factory's functional overload takes and its `out=` overload reads off `out` instead.
_TENSOR_OPTIONS = frozenset({"dtype", "layout", "device", "pin_memory"})


def _key(arguments, drop=frozenset()) -> tuple:
    """Argument names and types; the first argument by type only (`dropout_(self)` computes `dropout(input)`)."""
    kept = [a for a in arguments if not (a.kwarg_only and a.name in drop)]
    return tuple((a.name if i else "", str(a.type)) for i, a in enumerate(kept))


@functools.lru_cache(maxsize=None)
def functional_of(op):
    """The functional overload an in-place or `out=` overload computes, or None (not a variant, or no such
    overload: e.g. `normal_` has no functional overload with its arguments)."""
    if not isinstance(op, torch._ops.OpOverload):
        return None
    schema = op._schema
    args = list(schema.arguments)
    written = [a for a in args if _writes(a)]
    if not written:
        return None
    namespace, _, name = schema.name.partition("::")
    if all(a.kwarg_only for a in written):
        base, kept = name, [a for a in args if not _writes(a)]
    elif written == args[:1] and name.endswith("_") and len(name) > 1:
        base = "__" + name[3:] if name.startswith("__i") and name.endswith("__") else name[:-1]
        kept = args
    else:
        return None
    packet = getattr(getattr(torch.ops, namespace, None), base, None)
    if not isinstance(packet, torch._ops.OpOverloadPacket):
        return None
    want = _key(kept)
    candidates = [getattr(packet, o) for o in packet.overloads()]
    candidates = [c for c in candidates if c is not op and not c._schema.is_mutable]
    passes = [frozenset()] + ([_TENSOR_OPTIONS] if base == name else [])
    for drop in passes:
        for candidate in candidates:
            if _key(candidate._schema.arguments, drop) == want:
                return candidate
    return None


def out_argument_names(op) -> tuple[str, ...]:
    """The keyword-only arguments an `out=` overload writes (empty for an in-place or functional overload)."""
    schema = getattr(op, "_schema", None)
    if schema is None:
        return ()
    return tuple(a.name for a in schema.arguments if a.kwarg_only and _writes(a))


def variant_kind(op) -> str | None:
    """"in-place", "out" or None."""
    if functional_of(op) is None:
        return None
    return "out" if out_argument_names(op) else "in-place"


__all__ = ["functional_of", "out_argument_names", "variant_kind"]
