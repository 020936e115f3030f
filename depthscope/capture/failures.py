"""What a torch.export failure means: a shape constraint (the fitted engine may still help), the model's error,
or a bug in depthscope's own frames; and torch's suggested fix, whole, in one line."""

from __future__ import annotations

import ast
import operator
import os
import re
import sysconfig
import traceback

import torch

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # .../depthscope/
_CALLER = os.path.join(_PACKAGE, "capture", "export.py")  # export_model and the loss wrapper: they call the model
_TORCH = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_TRANSPARENT = tuple(p + os.sep for p in {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib",
                                                                                  "platlib")} if p)

_SHAPE_TEXT = ("Constraints violated", "specialized it to be a constant", "Specializations unexpectedly required",
               "Not all values of", "must always be equal")


def shape_failure(exc: BaseException) -> bool:
    """A constraint violation or specialisation of the Dims (torch's ConstraintViolationError, or a UserError
    saying so): what the fitted engine, which exports at concrete sizes, can get past."""
    name = type(exc).__name__
    text = _text(exc)
    if name == "ConstraintViolationError":
        return not text.startswith(("Static shape constraint of", "Expected input")) and "not in range" not in text
    kind = getattr(getattr(exc, "error_type", None), "name", "")
    return kind in ("CONSTRAINT_VIOLATION", "DYNAMIC_DIM") or any(t in text for t in _SHAPE_TEXT)


def culprit(exc: BaseException, user_file: str | None) -> str | None:
    """Whose code raised: "depthscope", "user" or None (torch alone, rejecting what it was given).

    Along the traceback: depthscope's frames are ours, frames in the model file's folder the user's; torch's
    frames stand between the caller and the code torch calls (the model); the standard library and installed
    packages are transparent (transformers called by torch's module call is the model's, contextlib called by a
    stand-in ours). Other code takes the owner of whoever called it without torch in between: a function a
    stand-in calls is ours, a helper the model calls from elsewhere the user's. The deepest owned frame decides.
    """
    folder = os.path.dirname(user_file) + os.sep if user_file else None
    owner, caller = None, None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = os.path.abspath(frame.filename)
        if path == _CALLER:
            caller = "depthscope"  # calls the model (through torch) or sets up around it, owns nothing itself
        elif path.startswith(_PACKAGE):
            owner = caller = "depthscope"
        elif path.startswith(_TORCH):
            caller = "torch"
        elif path.startswith(_TRANSPARENT) or frame.filename.startswith("<"):
            continue
        elif folder and path.startswith(folder):
            owner = caller = "user"
        else:
            owner = caller = "depthscope" if caller == "depthscope" else "user"
    return owner


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        return type(exc).__name__


_VIOLATION = re.compile(r"Not all values of (\w+) = (.+?) in the specified range ?(.*?) satisfy the generated guard "
                        r"(.+?)\.?$")


def explain_shape_failure(exc: BaseException, where: str, user_file: str | None) -> str:
    """One line: what torch could not keep, every violated guard, and every suggested fix (torch's own, else one
    derived from the guards: `H = Dim('H', min=33)`)."""
    lines = [line.strip() for line in _text(exc).splitlines()]
    lines = [line for line in lines if line and not line.startswith("The error above occurred")]
    head = lines[0] if lines else type(exc).__name__
    head = head.replace(' For more information, run with TORCH_LOGS="+dynamic".', "").strip()
    parts, fixes, derived = [], _suggested_fixes(lines), []
    for line in lines[1:]:
        m = _VIOLATION.match(line.lstrip("- ").strip())
        if not m:
            if line.startswith("- "):
                parts.append(line[2:].strip())
            continue
        name, source, span, guard = m.groups()
        guard = guard.replace(source, name)
        parts.append(f"not all values of {name}{' in ' + span if span else ''} satisfy the guard {guard}")
        fix = _derive_fix(name, span, guard)
        if fix:
            derived.append(fix)
    at = _user_stack_line(lines, user_file, where)
    msg = f"{at}: torch.export could not keep the requested dynamic shapes: {head}"
    if parts:
        msg += " (" + "; ".join(parts) + ")"
    fixes = list(dict.fromkeys(fixes or derived))  # torch repeats a fix once per violated guard
    if fixes:
        msg += "; suggested fix: " + "; ".join(fixes)
    return msg


def _suggested_fixes(lines: list[str]) -> list[str]:
    fixes: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("Suggested fixes"):
            for follow in lines[i + 1:]:
                if "=" in follow or "Dim" in follow:
                    fixes.append(follow)
                else:
                    break
    return list(dict.fromkeys(fixes))


def _user_stack_line(lines: list[str], user_file: str | None, where: str) -> str:
    """file:line of the model's code in torch's "User stack", when it gives one."""
    line = None
    if user_file:
        for text in lines:
            m = re.match(r'File "(.+?)", line (\d+)', text)
            if m and os.path.abspath(m.group(1)) == user_file:
                line = m.group(2)
    return f"{where}:{line}" if line else where


# A guard in one Dim, as torch prints it ((1 + (((-1) + W) // 32)) != 1), evaluated without eval.
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
        ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
        ast.GtE: operator.ge}


def _evaluator(guard: str, name: str):
    tree = ast.parse(guard, mode="eval").body

    def ev(node, x):
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name) and node.id == name:
            return x
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            v = ev(node.operand, x)
            return -v if isinstance(node.op, ast.USub) else (v if isinstance(node.op, ast.UAdd) else not v)
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            right = ev(node.right, x)
            if isinstance(node.op, ast.Pow) and not 0 <= right <= 64:
                raise ValueError("exponent")
            return _BIN[type(node.op)](ev(node.left, x), right)
        if isinstance(node, ast.BoolOp):
            values = [ev(v, x) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.Compare) and all(type(op) in _CMP for op in node.ops):
            left = ev(node.left, x)
            for op, comp in zip(node.ops, node.comparators):
                right = ev(comp, x)
                if not _CMP[type(op)](left, right):
                    return False
                left = right
            return True
        raise ValueError("unsupported guard")

    return lambda x: bool(ev(tree, x))


def _derive_fix(name: str, span: str, guard: str) -> str | None:
    """The Dim range on which the guard holds, when it is an interval: `name = Dim('name', min=.., max=..)`."""
    m = re.fullmatch(rf"(?:(\d+) <= )?{re.escape(name)}(?: <= (\d+))?", span.strip() or name)
    if not m:
        return None
    lo, hi = int(m.group(1) or 2), (int(m.group(2)) if m.group(2) else None)
    top = hi if hi is not None else 2**62
    try:
        holds = _evaluator(guard, name)
        new_lo = lo
        while new_lo <= min(top, lo + 65536) and not holds(new_lo):
            new_lo += 1
        if new_lo > min(top, lo + 65536):
            return None
        probes = sorted({*range(new_lo, min(top, new_lo + 1024) + 1), *(1 << k for k in range(1, 63)), top})
        failing = [x for x in probes if new_lo <= x <= top and not holds(x)]
        new_hi = hi
        if failing:
            good, bad = new_lo, failing[0]
            while bad - good > 1:
                mid = (good + bad) // 2
                good, bad = (mid, bad) if holds(mid) else (good, mid)
            new_hi = good
            if not all(holds(x) for x in range(max(new_lo, new_hi - 1024), new_hi + 1)):
                return None
    except (ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError, SyntaxError, MemoryError):
        return None
    if new_lo == lo and new_hi == hi:
        return None
    bounds = ([f"min={new_lo}"] if new_lo > 2 else []) + ([f"max={new_hi}"] if new_hi is not None else [])
    return f"{name} = Dim('{name}'{''.join(', ' + b for b in bounds)})"
