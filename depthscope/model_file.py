"""Model files: import a user's file and read `model`, `example_inputs`, `example_kwargs`, `dynamic_shapes`."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from depthscope.errors import InputError


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
        raise InputError(f"{user_location(exc, abspath, path)}: {type(exc).__name__} while importing the model file: {exc}") from exc
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
    model = call_if_factory(ns["model"], "model", path, hyper)
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{path}: `model` is a {type(model).__name__}, expected an nn.Module or a function returning one")
    if "example_inputs" not in ns:
        raise InputError(f"{path}: defines no `example_inputs` (a tuple of example positional arguments, or a function returning one)")
    inputs = call_if_factory(ns["example_inputs"], "example_inputs", path, hyper)
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    if isinstance(inputs, list):
        inputs = tuple(inputs)
    if not isinstance(inputs, tuple):
        raise InputError(f"{path}: `example_inputs` is a {type(inputs).__name__}, expected a tuple of positional arguments")
    kwargs = call_if_factory(ns.get("example_kwargs") or {}, "example_kwargs", path, hyper)
    if not isinstance(kwargs, dict):
        raise InputError(f"{path}: `example_kwargs` is a {type(kwargs).__name__}, expected a dict")
    loss = ns.get("loss")
    if loss is not None and not callable(loss):
        raise InputError(f"{path}: `loss` is a {type(loss).__name__}, expected a function of the model's output")
    name = os.path.splitext(os.path.basename(path))[0]
    dynamic = ns.get("dynamic_shapes")
    if callable(dynamic):
        dynamic = call_if_factory(dynamic, "dynamic_shapes", path, hyper)
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


def call_if_factory(value, what: str, path: str, hyper: dict | None = None):
    if callable(value) and not isinstance(value, torch.nn.Module):
        try:
            return value(**_accepted(value, hyper or {}))
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{user_location(exc, os.path.abspath(path), path)}: calling `{what}()` raised {type(exc).__name__}: {exc}") from exc
    return value


def user_location(exc: BaseException, abspath: str, shown: str) -> str:
    """file:line of the deepest traceback frame in the user's file (else the file alone)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == abspath:
            line = frame.lineno
    return f"{shown}:{line}" if line else shown


