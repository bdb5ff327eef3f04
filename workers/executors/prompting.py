"""The text a model sees for an agent or prompt step.

The step's prompt (inline, or its ``prompt_file`` read at load time) with earlier steps'
outputs filled in where it says ``{{ steps.<id>.output }}``, then the files its
``inputs.paths`` name (each within ``file_size_limit_kb``), then the constraints it runs under.
"""

from __future__ import annotations

import re
from pathlib import Path

from bcce.steptypes import StepContext
from bcce.workflow import TEMPLATE

DEFAULT_FILE_LIMIT_KB = 256
MAX_INPUT_FILES = 200
MAX_INPUT_BYTES = 2 * 1024 * 1024


def build(ctx: StepContext, constraints: str | None = None) -> str:
    """The full prompt of ctx's step."""
    step = ctx.step
    parts = [TEMPLATE.sub(lambda m: _template(m, ctx), step.prompt or "").strip()]
    files = input_files(ctx)
    if files:
        parts.append("## Input files\n\n" + "\n\n".join(files))
    if constraints:
        parts.append("## Constraints\n\n" + constraints)
    return "\n\n".join(p for p in parts if p) + "\n"


def _template(match: re.Match[str], ctx: StepContext) -> str:
    step_id, what = match.group(1), match.group(2)
    if what == "output_file":
        return str(ctx.output_path(step_id))
    return ctx.read_output(step_id).rstrip("\n")


def input_files(ctx: StepContext) -> list[str]:
    """Each file matching ``inputs.paths``, fenced, with notes on what was left out."""
    inputs = ctx.step.inputs
    if inputs is None or not inputs.paths:
        return []
    limit = (inputs.file_size_limit_kb or DEFAULT_FILE_LIMIT_KB) * 1024
    root = ctx.workspace.resolve()
    blocks: list[str] = []
    skipped: list[str] = []
    total = 0
    for path in _matching(root, inputs.paths):
        name = path.relative_to(root).as_posix()
        size = path.stat().st_size
        if size > limit:
            skipped.append(f"{name} ({size // 1024} KiB, over file_size_limit_kb)")
            continue
        if total + size > MAX_INPUT_BYTES or len(blocks) >= MAX_INPUT_FILES:
            skipped.append(f"{name} (input total limit reached)")
            continue
        raw = path.read_bytes()
        if b"\0" in raw[:8192]:
            skipped.append(f"{name} (binary)")
            continue
        total += size
        text = raw.decode("utf-8", errors="replace")
        fence = "```" if "```" not in text else "~~~~"
        blocks.append(f"### {name}\n\n{fence}\n{text.rstrip()}\n{fence}")
    if skipped:
        blocks.append("Not included: " + "; ".join(skipped) + ".")
    return blocks


def _matching(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    found: dict[Path, None] = {}
    for pattern in patterns:
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            continue  # inputs come from the workspace only
        literal = not any(c in pattern for c in "*?[")
        for path in sorted([root / pattern] if literal else root.glob(pattern)):
            real = path.resolve()
            inside = real.is_file() and real.is_relative_to(root)
            if inside and ".git" not in real.relative_to(root).parts:
                found.setdefault(real, None)
    return list(found)
