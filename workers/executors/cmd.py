"""``cmd`` steps: an argv (or ``sh -c`` when the step asks and policy allows), sandboxed."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from bcce.artifacts import OUTPUT, STDERR, STDOUT
from bcce.steptypes import StepContext, StepOutcome
from bcce.workflow import TEMPLATE, CmdStep
from workers.sandbox import CommandError, Limits, run_command

# What a step's output may contribute to an argv; more is a mistake, not a feature.
MAX_TEMPLATE_BYTES = 128 * 1024


def execute(ctx: StepContext) -> StepOutcome:
    """Run the step's command in the workspace under the decided timeout."""
    step = ctx.step
    assert isinstance(step, CmdStep)
    env = dict(ctx.env)
    try:
        if step.shell:
            # Never paste output into shell text: the shell expands a variable, and the
            # expansion is data, never code, however the template was quoted.
            argv = [TEMPLATE.sub(lambda m: _shell_reference(m, ctx, env), a) for a in step.argv()]
        else:
            argv = [TEMPLATE.sub(lambda m: _value(m, ctx), a) for a in step.argv()]
    except (OSError, ValueError) as exc:
        return _failed(ctx, f"cannot fill the command's templates: {exc}")
    stdout, stderr = ctx.step_dir / STDOUT, ctx.step_dir / STDERR
    try:
        result = run_command(
            argv,
            cwd=ctx.workspace,
            env=env,
            timeout_seconds=ctx.timeout_seconds,
            stdout_path=stdout,
            stderr_path=stderr,
            output_cap_bytes=ctx.output_cap_bytes,
            cancel=ctx.cancel,
            limits=limits(ctx.resources),
        )
    except CommandError as exc:
        return _failed(ctx, str(exc))
    _link_or_copy(stdout, ctx.step_dir / OUTPUT)
    metrics = {
        "argv": argv,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "command_seconds": round(result.duration_seconds, 6),
        "stdout_bytes": result.stdout_bytes,
        "stderr_bytes": result.stderr_bytes,
        "stdout_truncated": result.stdout_truncated,
        "stderr_truncated": result.stderr_truncated,
    }
    if result.cancelled:
        error = "stopped because the run ended; its process group was killed"
    elif result.timed_out:
        error = f"timed out after {ctx.timeout_seconds:g}s; its process group was killed"
    elif result.exit_code is None:
        error = f"killed by signal {result.signal}"
    elif result.exit_code != 0:
        error = f"exited with code {result.exit_code}"
    else:
        error = None
    return StepOutcome(
        ok=result.ok,
        exit_code=result.exit_code,
        error=error,
        timed_out=result.timed_out,
        cancelled=result.cancelled,
        metrics=metrics,
    )


MB = 1024 * 1024


def limits(resources: Mapping[str, int]) -> Limits | None:
    """The step's resource limits as the sandbox takes them."""
    if not resources:
        return None
    mb = {k: v * MB for k, v in resources.items() if k.endswith("_mb")}
    return Limits(
        cpu_seconds=resources.get("cpu_seconds"),
        memory_bytes=mb.get("memory_mb"),
        file_size_bytes=mb.get("file_size_mb"),
        open_files=resources.get("open_files"),
        processes=resources.get("processes"),
    )


def _value(match: re.Match[str], ctx: StepContext) -> str:
    step_id, what = match.group(1), match.group(2)
    if what == "output_file":
        return str(ctx.output_path(step_id))
    text = ctx.read_output(step_id).rstrip("\n")
    if len(text.encode()) > MAX_TEMPLATE_BYTES:
        raise ValueError(
            f"output of {step_id!r} is over {MAX_TEMPLATE_BYTES} bytes: "
            f"use {{{{ steps.{step_id}.output_file }}}} instead"
        )
    return text


def _shell_reference(match: re.Match[str], ctx: StepContext, env: dict[str, str]) -> str:
    suffix = "_FILE" if match.group(2) == "output_file" else ""
    name = f"BCCE_OUTPUT{suffix}_{match.group(1).upper()}"
    env[name] = _value(match, ctx)
    return "${" + name + "}"


def _link_or_copy(source: Path, target: Path) -> None:
    # output.txt is stdout for a cmd step; a hard link costs one syscall instead of a copy.
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _failed(ctx: StepContext, error: str) -> StepOutcome:
    for name in (STDOUT, OUTPUT):
        (ctx.step_dir / name).write_bytes(b"")  # no output of an earlier attempt survives
    (ctx.step_dir / STDERR).write_text(f"bcce: {error}\n", encoding="utf-8")
    return StepOutcome(ok=False, exit_code=None, error=error)
