"""Capture: load a model file, run torch.export, and name export's symbols after the user's Dims."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import inspect
import os
import re
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch

from depthscope.errors import CaptureError, InputError
from depthscope.capture.standins import standins
from depthscope.symbols import SymbolInfo, from_torch, size_symbol


@dataclass
class ModelSpec:
    """What a model file provides: the module, example inputs and the dynamic-shape spec."""

    model: torch.nn.Module
    example_inputs: tuple = ()
    example_kwargs: dict = field(default_factory=dict)
    dynamic_shapes: Any = None
    name: str = "model"
    source: str | None = None
    namespace: dict | None = None  # the model file's globals, where stand-ins are swapped in during export
    loss: Any = None  # for --train: output -> scalar tensor (default: sum of every floating-point output)


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
        out = _to_user_expr(value, self.rename, self._cache)
        known = self.rename.values()
        stray = [s for s in out.free_symbols if s not in known]
        if stray:
            for sym in stray:
                name = str(sym)
                self.rename[sym] = size_symbol(name)
                self.symbols.setdefault(name, SymbolInfo(name, 1, None))
                self.unbacked.append((name, "a data-dependent size (known only when the model runs)"))
            self._cache.clear()
            out = _to_user_expr(value, self.rename, self._cache)
        return out


# ---------------------------------------------------------------------------------------------
# Model files


def load_model_file(path: str) -> ModelSpec:
    """Import a model file and read `model`, `example_inputs`, `example_kwargs` and `dynamic_shapes` from it."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a Python model file")
    abspath = os.path.abspath(path)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    module_name = f"depthscope_model_{stem}"
    spec = importlib.util.spec_from_file_location(module_name, abspath)
    if spec is None or spec.loader is None:
        raise InputError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    # Higher-order ops trace through dynamo, which re-imports the model's module by name.
    sys.modules[module_name] = module
    sys.path.insert(0, os.path.dirname(abspath))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise InputError(f"{path}:{exc.lineno}: syntax error while importing the model file: {exc.msg}") from exc
    except Exception as exc:  # noqa: BLE001 - any error in user code is an input error
        raise InputError(f"{_user_location(exc, abspath, path)}: {type(exc).__name__} while importing the model file: {exc}") from exc
    finally:
        if sys.path and sys.path[0] == os.path.dirname(abspath):
            sys.path.pop(0)
    return spec_from_namespace(vars(module), path)


def spec_from_namespace(ns: dict, path: str, hyper: dict | None = None) -> ModelSpec:
    """Build a ModelSpec from a model file's globals; `hyper` sets the factories' integer keyword parameters."""
    if "model" not in ns:
        raise InputError(
            f"{path}: defines no `model`; a model file defines `model` (an nn.Module or a function returning one) "
            "and `example_inputs` (a tuple, or a function returning one), optionally `example_kwargs` and "
            "`dynamic_shapes`"
        )
    hyper = hyper or {}
    model = _call_if_factory(ns["model"], "model", path, hyper)
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{path}: `model` is a {type(model).__name__}, expected an nn.Module or a function returning one")
    if "example_inputs" not in ns:
        raise InputError(f"{path}: defines no `example_inputs` (a tuple of example positional arguments, or a function returning one)")
    inputs = _call_if_factory(ns["example_inputs"], "example_inputs", path, hyper)
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    if isinstance(inputs, list):
        inputs = tuple(inputs)
    if not isinstance(inputs, tuple):
        raise InputError(f"{path}: `example_inputs` is a {type(inputs).__name__}, expected a tuple of positional arguments")
    kwargs = _call_if_factory(ns.get("example_kwargs") or {}, "example_kwargs", path, hyper)
    if not isinstance(kwargs, dict):
        raise InputError(f"{path}: `example_kwargs` is a {type(kwargs).__name__}, expected a dict")
    loss = ns.get("loss")
    if loss is not None and not callable(loss):
        raise InputError(f"{path}: `loss` is a {type(loss).__name__}, expected a function of the model's output")
    name = os.path.splitext(os.path.basename(path))[0]
    dynamic = ns.get("dynamic_shapes")
    if callable(dynamic):
        dynamic = _call_if_factory(dynamic, "dynamic_shapes", path, hyper)
    return ModelSpec(model, inputs, kwargs, dynamic, name=name, source=path, namespace=ns, loss=loss)


def hyperparameters(factory) -> dict[str, int]:
    """The integer keyword parameters (with integer defaults) of a model factory or module class."""
    if not callable(factory) or isinstance(factory, torch.nn.Module):
        return {}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {name: p.default for name, p in params.items()
            if isinstance(p.default, int) and not isinstance(p.default, bool)}


def _accepted(fn, hyper: dict) -> dict:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(hyper)
    return {k: v for k, v in hyper.items() if k in params}


def _call_if_factory(value, what: str, path: str, hyper: dict | None = None):
    if callable(value) and not isinstance(value, torch.nn.Module):
        try:
            return value(**_accepted(value, hyper or {}))
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{_user_location(exc, os.path.abspath(path), path)}: calling `{what}()` raised {type(exc).__name__}: {exc}") from exc
    return value


def _user_location(exc: BaseException, abspath: str, shown: str) -> str:
    """file:line of the deepest traceback frame in the user's file (else the file alone)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == abspath:
            line = frame.lineno
    return f"{shown}:{line}" if line else shown


# ---------------------------------------------------------------------------------------------
# Export


def _export_decompositions():
    table = torch.export.default_decompositions()
    table.pop(torch.ops.aten.scaled_dot_product_attention.default, None)
    return table


VERBOSE = False  # --debug: let torch's own logs through


@contextlib.contextmanager
def quiet_torch_logs():
    """torch logs failed fake-kernel runs and guard dumps while exporting; the user gets one message instead."""
    if VERBOSE:
        yield
        return
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_model(spec: ModelSpec, train: bool = False):
    """torch.export the model (non-strict), translating failures into one clear message.

    Inference: the model in eval mode. Training (`train=True`): the model in train mode wrapped with its loss,
    then torch's joint forward-backward graph of that program.
    """
    model = spec.model
    if train and not any(p.requires_grad for p in model.parameters()):
        raise InputError(f"{spec.source or spec.name}: --train differentiates the loss with respect to the model's "
                         "parameters, and this model has none that require gradients")
    was_training = model.training
    model.train(train)
    target = _loss_module(model, spec.loss) if train else model
    try:
        extra = (spec.namespace,) if spec.namespace is not None else ()
        with quiet_torch_logs(), standins(model, extra):
            program = torch.export.export(
                target, spec.example_inputs, kwargs=spec.example_kwargs or None, dynamic_shapes=spec.dynamic_shapes
            )
            if train:
                program = _joint_program(program)
            return program
    except CaptureError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CaptureError(_explain_export_failure(exc, spec)) from exc
    finally:
        model.train(was_training)


class _LossWrapper(torch.nn.Module):
    """model -> scalar loss: the file's `loss(output)`, else the sum of every floating-point output."""

    def __init__(self, model: torch.nn.Module, loss=None):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        if self.loss is not None:
            return (self.loss(out),)
        leaves = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]
        if not leaves:
            raise CaptureError("--train: the model returns no floating-point tensor to differentiate; define `loss`")
        total = leaves[0].sum()
        for t in leaves[1:]:
            total = total + t.sum()
        return (total,)


def _loss_module(model: torch.nn.Module, loss) -> _LossWrapper:
    """A _LossWrapper whose forward shows the model's own signature: export binds dynamic_shapes by name."""

    def forward(self, *args, **kwargs):
        return _LossWrapper.forward(self, *args, **kwargs)

    params = list(inspect.signature(model.forward).parameters.values())
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    forward.__signature__ = inspect.Signature([self_param, *params])
    return type("TrainingStep", (_LossWrapper,), {"forward": forward})(model, loss)


def _joint_program(program):
    try:
        from torch.export.experimental import _export_forward_backward
    except ImportError as exc:  # pragma: no cover - torch < 2.5
        raise CaptureError("--train needs torch.export.experimental._export_forward_backward (torch >= 2.5)") from exc
    return _export_forward_backward(program, joint_loss_index=0)


def _explain_export_failure(exc: BaseException, spec: ModelSpec) -> str:
    text = str(exc).strip()
    where = spec.source or spec.name
    user_error = type(exc).__name__ in {"UserError", "ConstraintViolationError"}
    if "Constraints violated" in text or "specialized it to be a constant" in text or user_error:
        first = text.splitlines()[0] if text else type(exc).__name__
        fixes = _suggested_fixes(text)
        msg = f"{where}: torch.export could not keep the requested dynamic shapes: {first}"
        if fixes:
            msg += "; suggested fix: " + "; ".join(fixes)
        return msg
    if "GuardOnDataDependentSymNode" in type(exc).__name__ or "data-dependent" in text.lower():
        return (f"{where}: the model branches on tensor values (data-dependent control flow), which torch.export "
                f"cannot capture; use torch.cond or remove the branch. torch said: {text.splitlines()[0]}")
    loc = _user_location(exc, os.path.abspath(spec.source), spec.source) if spec.source else where
    first = text.splitlines()[0] if text else ""
    if "DynamicCache" in first:
        return (f"{loc}: the model returns a transformers DynamicCache, which torch.export cannot output; "
                "build the model with use_cache=False in its config")
    return f"{loc}: the model's forward raised {type(exc).__name__} during export: {first}"


def _suggested_fixes(text: str) -> list[str]:
    lines = text.splitlines()
    fixes = []
    for i, line in enumerate(lines):
        if "Suggested fixes" in line:
            for follow in lines[i + 1 :]:
                if follow.strip() and ("=" in follow or "Dim" in follow):
                    fixes.append(follow.strip())
                elif fixes:
                    break
    return fixes


# ---------------------------------------------------------------------------------------------
# Symbols


def capture(spec: ModelSpec, train: bool = False) -> Captured:
    """Export the model and map export's symbols (s27, ...) to the user's Dim names with their bounds."""
    program = export_model(spec, train=train)
    gm = program.graph_module
    rename, symbols = _user_symbols(program, spec.dynamic_shapes)
    return Captured(program, gm, symbols, rename, name=spec.name, mode="train" if train else "inference")


def _collect_dims(spec, found: dict) -> dict:
    """Every Dim object in a dynamic_shapes spec, by name."""
    if spec is None:
        return found
    if isinstance(spec, dict):
        for v in spec.values():
            _collect_dims(v, found)
    elif isinstance(spec, (list, tuple)):
        for v in spec:
            _collect_dims(v, found)
    elif hasattr(spec, "__name__") and type(spec).__name__ not in {"function", "type"}:
        found[spec.__name__] = spec
    return found


def _shape_env(program):
    for node in program.graph.nodes:
        val = node.meta.get("val")
        env = getattr(getattr(val, "fake_mode", None), "shape_env", None)
        if env is not None:
            return env
    return None


def _source_name(source) -> str:
    name = source.name
    return name() if callable(name) else name


def _user_symbols(program, dynamic_shapes):
    env = _shape_env(program)
    if env is None:
        return {}, {}
    dims = _collect_dims(dynamic_shapes, {})
    debug_names = getattr(env, "source_name_to_debug_name", {}) or {}
    rename: dict[sympy.Symbol, sympy.Expr] = {}
    fallback: dict[sympy.Symbol, str] = {}
    for sym, sources in env.var_to_sources.items():
        for source in sources:
            sname = _source_name(source)
            debug = debug_names.get(sname)
            target = env.replace(sym)
            if debug and debug.isidentifier() and isinstance(target, sympy.Symbol):
                rename.setdefault(target, size_symbol(debug))
            elif debug and debug in dims and getattr(dims[debug], "root", None) is not None:
                free = list(target.free_symbols)
                if len(free) == 1:
                    rename.setdefault(free[0], size_symbol(dims[debug].root.__name__))
            if isinstance(target, sympy.Symbol):
                fallback.setdefault(target, _name_from_source(sname))
    for sym, name in fallback.items():
        if sym not in rename:
            rename[sym] = size_symbol(name)
    symbols: dict[str, SymbolInfo] = {}
    for sym, user in rename.items():
        lo, hi = 2, None
        vr = env.var_to_range.get(sym)
        if vr is not None:
            try:
                lo = max(2, int(vr.lower))
            except (TypeError, ValueError, OverflowError):
                lo = 2
            try:
                hi = int(vr.upper) if vr.upper.is_finite else None
            except (TypeError, ValueError, OverflowError, AttributeError):
                hi = None
        name = str(user)
        prev = symbols.get(name)
        if prev is not None:
            lo = max(lo, prev.min)
            hi = hi if prev.max is None else (prev.max if hi is None else min(hi, prev.max))
        symbols[name] = SymbolInfo(name, lo, hi)
    return rename, symbols


def _name_from_source(sname: str) -> str:
    """L['x'].size()[1] -> x_dim1, for dims the user left unnamed."""
    m = re.match(r"L\['(\w+)'\]\.size\(\)\[(\d+)\]", sname)
    if m:
        return f"{m.group(1)}_dim{m.group(2)}"
    cleaned = re.sub(r"\W+", "_", sname).strip("_")
    return cleaned or "s"


def _to_user_expr(value, rename, cache: dict) -> sympy.Expr:
    if isinstance(value, bool):
        return sympy.Integer(int(value))
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, torch.SymInt):
        node = value.node
        expr = node.expr
        env = getattr(node, "shape_env", None)
        hit = cache.get(expr)
        if hit is not None:
            return hit
        out = from_torch(env.replace(expr) if env is not None else expr, rename)
        cache[node.expr] = out
        return out
    if isinstance(value, sympy.Basic):
        return from_torch(value, rename)
    if isinstance(value, float):
        return sympy.Float(value)
    raise TypeError(f"not a size: {value!r}")


def signature_names(model: torch.nn.Module) -> list[str]:
    """The forward's parameter names (for messages)."""
    try:
        return list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return []
