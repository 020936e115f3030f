"""torch.export of a model spec (inference, or the joint forward-backward graph), failures as one clear message."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import warnings

import torch

from depthscope.capture.standins import standins
from depthscope.errors import CaptureError, InputError
from depthscope.model_file import ModelSpec, user_location


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
    loc = user_location(exc, os.path.abspath(spec.source), spec.source) if spec.source else where
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


