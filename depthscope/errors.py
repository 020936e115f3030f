"""Errors users can act on, each with its exit code (0 ok, 1 check failed, 2 usage or input, 101 internal)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 101


class DepthscopeError(Exception):
    """An error with a one-line message for the user and an exit code."""

    exit_code = EXIT_INTERNAL


class InputError(DepthscopeError):
    """The model file, its inputs or a command-line value is unusable."""

    exit_code = EXIT_USAGE


class CaptureError(InputError):
    """torch.export could not capture the model."""


class ShapeConstraintError(CaptureError):
    """torch.export could not keep the Dims symbolic: a constraint violation, a specialisation, a guard cutting a
    Dim's range. The only capture failure the auto engine answers with the fitted engine (concrete sizes)."""


class BudgetError(InputError):
    """A budget (or a class in the lock file) that is not valid budget text: a usage error, exit 2.

    Raised by the budget grammar (depthscope.check.budget, which exports it) and by Class.from_json.
    """


class RuleError(DepthscopeError):
    """A built-in cost rule failed: a depthscope bug (internal error)."""


class CheckFailed(DepthscopeError):
    """A requested check (e.g. --strict) failed."""

    exit_code = EXIT_CHECK_FAILED
