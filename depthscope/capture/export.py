"""torch.export of a model spec (inference, or the joint forward-backward graph), failures as one clear message."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import warnings

import torch

from depthscope.capture.failures import culprit, explain_shape_failure, shape_failure
from depthscope.capture.standins import standins
from depthscope.errors import CaptureError, DepthscopeError, InputError, ShapeConstraintError
from depthscope.clock import status_after
from depthscope.guard import exception_text, user_code
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
    then torch's joint forward-backward graph of that program. Failures: a shape constraint or specialisation
    is a ShapeConstraintError (the fitted engine may still count the model at concrete sizes); an exception in
    the model's code (or torch's) is a CaptureError naming file:line; one raised in depthscope's own frames (a
    stand-in) is re-raised as it is: an internal error.
    """
    model = spec.model
    where = spec.source or spec.name
    abspath = os.path.abspath(spec.source) if spec.source else None
    if train and not any(p.requires_grad for p in model.parameters()):
        raise InputError(f"{where}: --train differentiates the loss with respect to the model's "
                         "parameters, and this model has none that require gradients")
    was_training = model.training
    model.train(train)
    target = _loss_module(model, spec.loss) if train else model
    try:
        extra = (spec.namespace,) if spec.namespace is not None else ()
        with user_code("exporting", where, abspath), status_after(), quiet_torch_logs(), standins(model, extra):
            program = torch.export.export(
                target, spec.example_inputs, kwargs=spec.example_kwargs or None, dynamic_shapes=spec.dynamic_shapes
            )
            if train:
                program = _joint_program(program)
            return program
    except DepthscopeError:
        raise
    except Exception as exc:  # noqa: BLE001
        if shape_failure(exc):
            raise ShapeConstraintError(explain_shape_failure(exc, where, abspath)) from exc
        who = culprit(exc, abspath)
        if who == "depthscope":
            raise  # a bug of ours (a stand-in, the loss wrapper): exit 101, --debug shows the traceback
        raise CaptureError(_explain_export_failure(exc, spec, who)) from exc
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


def _explain_export_failure(exc: BaseException, spec: ModelSpec, who: str | None) -> str:
    text = exception_text(exc)
    where = spec.source or spec.name
    loc = user_location(exc, os.path.abspath(spec.source), spec.source) if spec.source else where
    if "GuardOnDataDependentSymNode" in type(exc).__name__ or "data-dependent" in str(exc).lower():
        return (f"{loc}: the model branches on tensor values (data-dependent control flow), which torch.export "
                f"cannot capture; use torch.cond or remove the branch. torch said: {text}")
    if "DynamicCache" in text:
        return (f"{loc}: the model returns a transformers DynamicCache, which torch.export cannot output; "
                "build the model with use_cache=False in its config")
    if who is None and loc == where:  # torch's own frames alone: it refused what it was given
        return f"{where}: torch.export failed with {type(exc).__name__}: {text}"
    return f"{loc}: the model's forward raised {type(exc).__name__} during export: {text}"
