"""Errors bcce reports to users, each with the exit code the CLI ends with.

Exit codes (the contract of ``bcce workflow run --wait`` and every other command):

====  ==========================================================
0     succeeded
1     a step failed
2     invalid workflow or usage
3     denied by policy
4     waiting for approval, or rejected
5     cancelled
6     budget exceeded
7     infrastructure: broker or workers unavailable, deadline
====  ==========================================================

``BcceError``
 ├── ``UsageError``          (2)
 │    └── ``WorkflowError``  (2)
 ├── ``NotFound``            (2)
 ├── ``PolicyDenied``        (3)
 └── ``InfrastructureError`` (7)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, shared by the CLI and run outcomes."""

    OK = 0
    STEP_FAILED = 1
    INVALID = 2
    DENIED = 3
    AWAITING_APPROVAL = 4
    CANCELLED = 5
    BUDGET_EXCEEDED = 6
    INFRASTRUCTURE = 7


class BcceError(Exception):
    """Raised for any condition bcce reports to the user as one line, without a traceback."""

    exit_code: ExitCode = ExitCode.STEP_FAILED


class UsageError(BcceError):
    """Raised when a command is called with arguments or options that cannot work."""

    exit_code = ExitCode.INVALID


class WorkflowError(UsageError):
    """Raised when a workflow file cannot be loaded or validated; holds every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class NotFound(BcceError):
    """Raised when a run, step or file named by the user does not exist."""

    exit_code = ExitCode.INVALID


class PolicyDenied(BcceError):
    """Raised when policy forbids what was asked."""

    exit_code = ExitCode.DENIED


class InfrastructureError(BcceError):
    """Raised when the broker, the run store or the worker pools cannot be reached."""

    exit_code = ExitCode.INFRASTRUCTURE
