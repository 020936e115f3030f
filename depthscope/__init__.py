"""depthscope: symbolic work and parallel depth of PyTorch models."""

from importlib import import_module

__version__ = "0.1.0"

# The public names are imported on first use (PEP 562), so that commands that need no analysis, such as
# `depthscope check` with a warm cache, do not pay for importing torch.
_EXPORTS = {
    "Analysis": ".engine.analysis",
    "CaptureError": ".errors",
    "CheckFailed": ".errors",
    "Cost": ".cost.value",
    "DepthscopeError": ".errors",
    "InputError": ".errors",
    "OpCall": ".cost.registry",
    "Report": ".engine.analysis",
    "TensorMeta": ".cost.registry",
    "analyze": ".pipeline",
    "analyze_file": ".pipeline",
    "big_o": ".complexity",
    "clog2": ".symbols",
    "register": ".cost.registry",
    "rule": ".cost.registry",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'depthscope' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = sorted(_EXPORTS)
