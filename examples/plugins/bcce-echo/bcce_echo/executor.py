"""Runs ``type: echo`` steps inside an ``echo`` pool worker."""

from __future__ import annotations

import re

from bcce.steptypes import StepContext, StepOutcome
from bcce.workflow import TEMPLATE
from bcce_echo import EchoStep


def execute(ctx: StepContext) -> StepOutcome:
    """Write the expanded message ``repeat`` times to output.txt and stdout.txt."""
    step = ctx.step
    assert isinstance(step, EchoStep)
    stdout, stderr = ctx.step_dir / "stdout.txt", ctx.step_dir / "stderr.txt"
    try:
        line = _expand(step.message, ctx)
    except (OSError, ValueError) as exc:  # a missing or undecodable earlier output
        error = f"cannot fill the message's templates: {exc}"
        for path in (stdout, ctx.step_dir / "output.txt"):
            path.write_text("", encoding="utf-8")
        stderr.write_text(f"bcce-echo: {error}\n", encoding="utf-8")
        return StepOutcome(ok=False, error=error)
    text = f"{line}\n" * step.repeat
    for path in (stdout, ctx.step_dir / "output.txt"):
        path.write_text(text, encoding="utf-8")
    stderr.write_text("", encoding="utf-8")
    return StepOutcome(
        ok=True,
        exit_code=0,
        metrics={"repeat": step.repeat, "output_bytes": len(text.encode())},
    )


def _expand(text: str, ctx: StepContext) -> str:
    def value(match: re.Match[str]) -> str:
        step_id, what = match.group(1), match.group(2)
        if what == "output_file":
            return str(ctx.output_path(step_id))
        return ctx.read_output(step_id).rstrip("\n")

    return TEMPLATE.sub(value, text)
