"""depthscope: symbolic work and parallel depth of PyTorch models."""

from .analysis import Report
from .api import analyze, analyze_file
from .cost import Cost
from .errors import CaptureError, CheckFailed, DepthscopeError, InputError
from .rules import OpCall, TensorMeta, register
from .rules.registry import rule
from .symbols import big_o, clog2

__version__ = "0.1.0"

__all__ = [
    "CaptureError",
    "CheckFailed",
    "Cost",
    "DepthscopeError",
    "InputError",
    "OpCall",
    "Report",
    "TensorMeta",
    "analyze",
    "analyze_file",
    "big_o",
    "clog2",
    "register",
    "rule",
]
