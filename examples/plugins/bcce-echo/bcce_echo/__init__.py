"""``type: echo``: a step that writes a message, with earlier steps' outputs filled in.

This module is what ``bcce workflow validate`` and the CLI import, so it stays light: the
parameter model and the :class:`StepType` record. The executor is in
:mod:`bcce_echo.executor`, which only ``bcce worker --pool echo`` processes import.
"""

from __future__ import annotations

from pydantic import Field

from bcce.steptypes import StepType
from bcce.workflow import TEMPLATE, Step

__all__ = ["STEP_TYPE", "EchoStep"]

MAX_REPEAT = 100


class EchoStep(Step):
    """``type: echo``: ``message`` (templates allowed) written ``repeat`` times, one a line."""

    message: str = Field(min_length=1)
    repeat: int = Field(default=1, ge=1, le=MAX_REPEAT)

    def referenced_steps(self) -> set[str]:
        """Template references in ``message`` too, so the loader checks they point back."""
        return super().referenced_steps() | {m.group(1) for m in TEMPLATE.finditer(self.message)}


STEP_TYPE = StepType(
    name="echo",
    queue="echo",
    model=EchoStep,
    executor="bcce_echo.executor:execute",
    description="write a message, with {{ steps.<id>.output }} filled in",
    long_running=False,
)
