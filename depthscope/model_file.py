"""Model files: import a user's file and read `model`, `example_inputs`, `example_kwargs`, `dynamic_shapes`."""

from __future__ import annotations

import importlib.util
import inspect
import keyword
import os
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch

from depthscope.errors import DepthscopeError, InputError
from depthscope.guard import exception_text, user_code, where_in
from depthscope.symbols import parse_symbols, size_symbol


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
    try:
        abspath.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{ascii(path)[1:-1]}: the file's path is not valid UTF-8, and torch.export records the "
                         "model's source file names as UTF-8; rename the file or its folder") from None
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
        with user_code("importing", path, abspath):
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}" if os.path.abspath(exc.filename or "") == abspath else user_location(exc, abspath, path)
        raise InputError(f"{where}: syntax error while importing the model file: {exc.msg}") from exc
    except DepthscopeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error in user code is an input error
        raise InputError(f"{user_location(exc, abspath, path)}: {type(exc).__name__} while importing the model file: "
                         f"{exception_text(exc)}") from exc
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
    kwargs = ns.get("example_kwargs")
    kwargs = {} if kwargs is None else call_if_factory(kwargs, "example_kwargs", path, hyper)
    if not isinstance(kwargs, dict):
        raise InputError(f"{path}: `example_kwargs` is a {type(kwargs).__name__}, expected a dict")
    loss = ns.get("loss")
    if loss is not None and not callable(loss):
        raise InputError(f"{path}: `loss` is a {type(loss).__name__}, expected a function of the model's output")
    name = os.path.splitext(os.path.basename(path))[0]
    dynamic = ns.get("dynamic_shapes")
    if callable(dynamic) and not isinstance(dynamic, torch.export.Dim):
        dynamic = call_if_factory(dynamic, "dynamic_shapes", path, hyper)
    dynamic = checked_dynamic_shapes(model, inputs, kwargs, dynamic, path)
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
        abspath = os.path.abspath(path)
        try:
            with user_code(f"calling `{what}()` in", path, abspath):
                return value(**_accepted(value, hyper or {}))
        except DepthscopeError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{user_location(exc, abspath, path)}: calling `{what}()` raised {type(exc).__name__}: "
                             f"{exception_text(exc)}") from exc
    return value


def user_location(exc: BaseException, abspath: str, shown: str) -> str:
    """file:line of the deepest traceback frame in the user's file (else the file alone)."""
    return where_in(exc, abspath, shown)




# ---------------------------------------------------------------------------------------------
# dynamic_shapes, checked against the forward's inputs before export


_DIM_HINT = type(torch.export.Dim.AUTO)  # Dim.AUTO, Dim.STATIC, Dim.DYNAMIC


# functions the formulas can contain (torch's FloorDiv, Mod, Max... become these): a symbol of that name would
# shadow the function when a formula is read back
_FORMULA_FUNCTIONS = frozenset({"log", "Max", "Min", "ceiling", "floor", "Mod"})


def symbol_name_problem(name: str) -> str | None:
    """Why a size symbol's name would not read back as itself from the reports (None when it does).

    The reports' formulas parse with `depthscope.symbols.parse_symbols` (sympy with log, Max, Min, ceiling and
    floor); a symbol named `log`, `Max`, `lambda`, `True` or a name Python normalises to another (NFKC: `ℕ` is
    `N`) would read back as something else.
    """
    from depthscope.cost.traffic import FAST_MEMORY  # the I/O formulas' fast-memory size

    if name not in _FORMULA_FUNCTIONS and name != FAST_MEMORY.name and _reads_back(name):
        return None
    taken = " (a function in the formulas)" if name in _FORMULA_FUNCTIONS else ""
    if name == FAST_MEMORY.name:
        taken = " (the fast memory's size in the I/O formulas)"
    return (f"the size name {name!r}{taken} would not read back as a plain symbol from the report's formulas; "
            f"rename it, e.g. to {_suggest(name)!r}")


def _reads_back(name: str) -> bool:
    if not name.isidentifier() or keyword.iskeyword(name):
        return False  # only a plain identifier may reach sympify, which evaluates its text
    try:
        return sympy.sympify(name, locals=parse_symbols([name])) == size_symbol(name)
    except Exception:  # noqa: BLE001 - any parse failure means it does not read back
        return False


def _suggest(name: str) -> str:
    plain = unicodedata.normalize("NFKC", name)
    for candidate in (f"{name}_", f"{plain}_", f"{plain}_dim", "n_"):
        if candidate.isidentifier() and _reads_back(candidate):
            return candidate
    return "n_"


def checked_dynamic_shapes(model, args: tuple, kwargs: dict, shapes, where: str):
    """`shapes` checked against the forward's inputs, as a dict by input name (inputs it leaves out: None).

    Refused with the input names listed (exit 2): not a dict/tuple/list, a key that is no input, no input named,
    a wrong number of entries, an axis out of range, an entry that is not a Dim (a string), Dims on a non-tensor,
    an example size of 0 or 1 or outside the Dim's range, one name with two ranges, a name that does not read
    back from the formulas. Export would otherwise drop Dims silently, or fail in ways that read as the model's.
    """
    if shapes is None:
        return None
    try:
        combined = dict(torch.export.dynamic_shapes._combine_args(model, args, kwargs))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: the example inputs do not fit the forward's signature: {exception_text(exc)}") from exc
    names = list(combined)
    listing = ", ".join(names) or "none"
    inputs = f"the forward's inputs are: {listing}"
    if isinstance(shapes, dict):
        unknown = [k for k in shapes if k not in combined]
        if unknown:
            params = _forward_params(model)
            missing = [k for k in unknown if k in params]
            detail = (f"; {', '.join(map(repr, missing))} has no example value (example_inputs/example_kwargs)"
                      if missing else "")
            raise InputError(f"{where}: `dynamic_shapes` names {', '.join(map(repr, unknown))}, not an input of the "
                             f"forward{detail}; {inputs}")
        if not shapes and names:
            raise InputError(f"{where}: `dynamic_shapes` names no input; {inputs} (give their Dims, or remove "
                             "`dynamic_shapes` for a static analysis)")
        by_name = {k: shapes.get(k) for k in names}
    elif isinstance(shapes, (list, tuple)) and not isinstance(shapes, torch.Size):
        if len(shapes) != len(names):
            raise InputError(f"{where}: `dynamic_shapes` has {len(shapes)} entr{'y' if len(shapes) == 1 else 'ies'} "
                             f"and the forward {len(names)} input{'' if len(names) == 1 else 's'}; {inputs} (a dict "
                             "by input name may leave some out)")
        by_name = dict(zip(names, shapes))
    else:
        raise InputError(f"{where}: `dynamic_shapes` is {_what(shapes)}; expected a dict by input name, e.g. "
                         f"{{{names[0] if names else 'x'!r}: {{0: Dim('b')}}}}, or a tuple with one entry per input; "
                         f"{inputs}")
    dims: dict[str, tuple] = {}
    for name, value in combined.items():
        try:
            by_name[name] = _check_entry(value, by_name[name], name, where, inputs, dims)
        except InputError as exc:
            raise InputError(f"{exc}; {inputs}" if inputs not in str(exc) else str(exc)) from None
    return by_name


def _forward_params(model) -> list[str]:
    try:
        return list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError, AttributeError):
        return []


def _what(value) -> str:
    if isinstance(value, str):
        return f"a string ({value[:40]!r}); Dims are torch.export.Dim objects"
    if isinstance(value, torch.export.Dim):
        return f"a single Dim ({value.__name__}); give it per input and axis"
    article = "an" if type(value).__name__[:1].lower() in "aeiou" else "a"
    return f"{article} {type(value).__name__}"


def _check_entry(value, spec, path: str, where: str, inputs: str, dims: dict):
    """One input (or a part of one): the spec checked against the example value, missing dict keys as None."""
    if spec is None:
        return None
    if isinstance(value, torch.Tensor):
        return _check_tensor(value, spec, path, where, inputs, dims)
    if type(value) is dict and isinstance(spec, dict):
        unknown = [k for k in spec if k not in value]
        if unknown:
            raise InputError(f"{where}: `dynamic_shapes` for {path} names {', '.join(map(repr, unknown))}, which "
                             f"{path} does not have (its keys: {', '.join(map(repr, value)) or 'none'})")
        return {k: _check_entry(v, spec.get(k), f"{path}[{k!r}]", where, inputs, dims) for k, v in value.items()}
    if type(value) in (list, tuple) and isinstance(spec, (list, tuple)):
        if len(spec) != len(value):
            raise InputError(f"{where}: `dynamic_shapes` for {path} has {len(spec)} entries and {path} has {len(value)}")
        return type(spec)(_check_entry(v, s, f"{path}[{i}]", where, inputs, dims)
                          for i, (v, s) in enumerate(zip(value, spec)))
    if isinstance(value, (bool, int, float, complex, str, bytes, type(None))) or type(value) in (dict, list, tuple):
        raise InputError(f"{where}: `dynamic_shapes` gives {path} a shape ({_short(spec)}), but {path} is "
                         f"{_what(value) if not isinstance(value, (dict, list, tuple)) else 'a ' + type(value).__name__} "
                         f"in the example inputs, not a tensor; give it None (Dims go on tensor axes); {inputs}")
    return spec  # a custom pytree container: torch.export checks it


def _short(spec) -> str:
    try:
        text = repr(spec)
    except Exception:  # noqa: BLE001
        text = type(spec).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _check_tensor(t: torch.Tensor, spec, path: str, where: str, inputs: str, dims: dict):
    shape = list(t.shape)
    rank = len(shape)
    if isinstance(spec, dict):
        items = list(spec.items())
    elif isinstance(spec, (list, tuple)):
        if len(spec) != rank:
            raise InputError(f"{where}: `dynamic_shapes` for {path} has {len(spec)} entries; {path} has {rank} axes "
                             f"(shape {shape}): give one per axis, or a dict {{axis: Dim}}")
        items = list(enumerate(spec))
    else:
        raise InputError(f"{where}: `dynamic_shapes` for the tensor {path} is {_what(spec)}; expected a dict "
                         f"{{axis: Dim}} such as {{0: Dim('b')}}, or a tuple with one entry per axis; {inputs}")
    out = {}
    for axis, dim in items:
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise InputError(f"{where}: `dynamic_shapes` for {path} has the key {_short(axis)}; axes are integers "
                             f"0..{rank - 1} ({path} has shape {shape})")
        if not -rank <= axis < rank:
            raise InputError(f"{where}: `dynamic_shapes` puts {_short(dim)} on axis {axis} of {path}, which has "
                             f"{rank} ax{'is' if rank == 1 else 'es'} (shape {shape}); axes are 0..{rank - 1}")
        axis %= rank
        _check_dim(dim, shape[axis], f"{path}'s axis {axis}", where, dims)
        out[axis] = dim
    return out


def _check_dim(dim, size: int, at: str, where: str, dims: dict) -> None:
    if dim is None or isinstance(dim, _DIM_HINT):
        return
    if isinstance(dim, bool) or not isinstance(dim, (int, torch.export.Dim)):
        hint = f"; write Dim({dim!r})" if isinstance(dim, str) and dim.isidentifier() else ""
        raise InputError(f"{where}: `dynamic_shapes` puts {_what(dim) if isinstance(dim, str) else _short(dim)} on "
                         f"{at}; expected a torch.export.Dim, Dim.AUTO, Dim.STATIC, None or the static size{hint}")
    if isinstance(dim, int):
        if dim != size:
            raise InputError(f"{where}: `dynamic_shapes` fixes {at} at {dim}, but it is {size} in the example inputs")
        return
    root = getattr(dim, "root", None) or dim
    name = root.__name__
    problem = symbol_name_problem(name)
    if problem:
        raise InputError(f"{where}: Dim {name!r} on {at}: {problem}")
    bounds = (root.min, root.max)
    if name in dims and dims[name][0] != bounds:
        raise InputError(f"{where}: two Dims named {name!r} with different ranges ({_range(*dims[name][0])} on "
                         f"{dims[name][2]}, {_range(*bounds)} on {at}); use one Dim object")
    if root is not dim:  # a derived Dim (2*m): its size follows from m's
        dims.setdefault(name, (bounds, None, at))
        return
    if size in (0, 1):
        raise InputError(f"{where}: Dim {name!r} is on {at}, whose size in the example inputs is {size}; the example "
                         f"size must be at least 2, since torch.export specialises sizes 0 and 1 (give the example "
                         f"input a size of 2 or more on that axis"
                         + (f"; `--at {name}=1` then evaluates size 1 by a concrete capture)" if size == 1 else ")"))
    lo, hi = root.min, root.max
    if size < lo or (hi is not None and _finite(hi) and size > hi):
        raise InputError(f"{where}: {at} is {size} in the example inputs, outside {name}'s range {_range(lo, hi)}; "
                         "give an example size inside the Dim's range")
    seen = dims.get(name)
    if seen is not None and seen[1] is not None and seen[1] != size:
        raise InputError(f"{where}: Dim {name!r} is {seen[1]} on {seen[2]} and {size} on {at} in the example inputs; "
                         "one Dim stands for one size")
    if seen is None or seen[1] is None:
        dims[name] = (bounds, size, at)


def _finite(x) -> bool:
    """An int bound (torch's int_oo and sympy's oo are not)."""
    return isinstance(x, int) and not isinstance(x, bool) and x < 2**62


def _range(lo, hi) -> str:
    return f"[{lo}, {hi if _finite(hi) else 'inf'}]"
