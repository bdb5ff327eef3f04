"""From a workflow file (or a stored snapshot) to a validated :class:`Workflow`.

Every problem is collected and reported at once as ``file:line:col path: message``.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bcce.errors import WorkflowError
from bcce.source import Loc, Source, load_source, substitute
from bcce.steptypes import StepType, did_you_mean, unknown_type_message
from bcce.workflow import Step, Workflow, WorkflowHead, env_text

RUN_ID_VAR = "RUN_ID"
MAX_PROMPT_FILE_BYTES = 256 * 1024
MAX_PATCH_FILE_BYTES = 8 * 1024 * 1024
# Files a step names, read at load time into the key that carries their text.
INLINED = (
    ("prompt_file", "prompt", MAX_PROMPT_FILE_BYTES),
    ("patch_file", "patch", MAX_PATCH_FILE_BYTES),
)


def load_workflow(
    path: Path,
    types: Mapping[str, StepType],
    *,
    variables: Mapping[str, str] | None = None,
    run_id: str | None = None,
    environ: Mapping[str, str] | None = None,
    max_bytes: int = 1_048_576,
) -> Workflow:
    """Read, substitute and validate a workflow file.

    Variables resolve from ``variables`` (``--var``), then the workflow's own ``env`` block,
    then the process environment; ``${RUN_ID}`` is the run id (the text ``RUN_ID`` when
    only validating).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WorkflowError([f"{path}: cannot read the workflow: {exc.strerror or exc}"]) from None
    source = load_source(raw, str(path), max_bytes=max_bytes)
    process_env = os.environ if environ is None else environ
    given = dict(variables or {})
    given[RUN_ID_VAR] = run_id or "RUN_ID"

    def outer(name: str) -> str | None:
        return given.get(name, process_env.get(name))

    # The workflow's own env block is resolved first (from --var and the environment), so
    # `GREETING: ${GREETING:-hello}` declares a default that the other keys can use.
    declared = _declared_env(substitute(_env_only(source), outer).data)

    def lookup(name: str) -> str | None:
        for scope in (given, declared, process_env):
            if name in scope:
                return scope[name]
        return None

    return validate(_inline_files(substitute(source, lookup), path.parent), types)


def _inline_files(source: Source, base: Path) -> Source:
    """Read each step's ``prompt_file`` and ``patch_file`` (relative to the workflow file)
    into its ``prompt`` and ``patch``.

    The text travels with the run's snapshot, so a worker on another host needs no copy of
    the file; the ``*_file`` key stays as a record of where it came from.
    """
    data = source.data
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list):
        return source
    problems: list[str] = []
    inlined: list[Any] = []
    for index, raw in enumerate(steps):
        for file_key, text_key, limit in INLINED:
            name = raw.get(file_key) if isinstance(raw, dict) else None
            if not isinstance(name, str):
                continue
            loc = ("steps", index, file_key)
            if raw.get(text_key) is not None:
                problems.append(source.problem(loc, f"give `{text_key}` or `{file_key}`, not both"))
                continue
            file = base / name
            try:
                if file.stat().st_size > limit:
                    raise ValueError(f"it is over {limit // 1024} KiB")
                text = file.read_text("utf-8")
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                what = file_key.removesuffix("_file")
                problems.append(
                    source.problem(loc, f"cannot read {what} file {str(file)!r}: {reason}")
                )
                continue
            raw = {**raw, text_key: text}
        inlined.append(raw)
    if problems:
        raise WorkflowError(problems)
    return replace(source, data={**data, "steps": inlined})


def _env_only(source: Source) -> Source:
    data = source.data if isinstance(source.data, dict) else {}
    env = data.get("env")
    return replace(source, data={"env": env} if isinstance(env, dict) else {})


def _declared_env(data: Any) -> dict[str, str]:
    env = data.get("env") if isinstance(data, dict) else None
    if not isinstance(env, dict):
        return {}
    return {k: env_text(v) for k, v in env.items() if isinstance(v, str | int | float)}


def from_snapshot(snapshot: Mapping[str, Any], types: Mapping[str, StepType]) -> Workflow:
    """Validate a workflow stored with a run (already substituted)."""
    return validate(Source(name="(snapshot)", data=dict(snapshot), marks={}, key_marks={}), types)


def validate(source: Source, types: Mapping[str, StepType]) -> Workflow:
    """Validate loaded data; raises WorkflowError listing every problem."""
    data = source.data
    if not isinstance(data, dict):
        raise WorkflowError([source.problem((), "a workflow must be a mapping of keys")])
    head = {k: v for k, v in data.items() if k != "steps"}
    problems: list[str] = []
    try:
        WorkflowHead.model_validate(head)
    except ValidationError as exc:
        problems += _problems(source, exc, Workflow, prefix=())
    raw_steps = data.get("steps")
    if "steps" not in data:
        problems.append(source.problem((), "missing required key 'steps'"))
    elif not isinstance(raw_steps, list) or not raw_steps:
        problems.append(source.problem(("steps",), "`steps` must be a list of at least one step"))
    steps = (
        []
        if not isinstance(raw_steps, list)
        else [
            _step(source, ("steps", index), raw, types, problems)
            for index, raw in enumerate(raw_steps)
        ]
    )
    problems += _reference_problems(source, raw_steps if isinstance(raw_steps, list) else [], steps)
    if problems:
        raise WorkflowError(problems)
    return Workflow.model_validate({**head, "steps": steps})


def _step(
    source: Source, loc: Loc, raw: Any, types: Mapping[str, StepType], problems: list[str]
) -> Step | None:
    if not isinstance(raw, dict):
        problems.append(source.problem(loc, "a step must be a mapping of keys"))
        return None
    kind = raw.get("type")
    if not isinstance(kind, str):
        problems.append(source.problem(loc, "missing required key 'type'"))
        return None
    if kind not in types:
        problems.append(source.problem((*loc, "type"), unknown_type_message(kind, types)))
        return None
    model = types[kind].model
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems += _problems(source, exc, model, prefix=loc)
        return None


def _reference_problems(
    source: Source, raw_steps: list[Any], steps: list[Step | None]
) -> list[str]:
    """Duplicate ids and templates that name no earlier step (checked on what validated)."""
    ids = [raw.get("id") if isinstance(raw, dict) else None for raw in raw_steps]
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, (step_id, step) in enumerate(zip(ids, steps, strict=True)):
        if isinstance(step_id, str) and step_id in seen:
            problems.append(
                source.problem(
                    ("steps", index, "id"),
                    f"duplicate step id {step_id!r} (first used by steps[{seen[step_id]}])",
                )
            )
        for ref in sorted(step.referenced_steps() if step else ()):
            if ref in seen:
                continue
            where = "no step"
            if ref == step_id:
                where = "this step"
            elif ref in ids:
                where = "a later step"
            problems.append(
                source.problem(
                    ("steps", index),
                    f"template refers to {ref!r}, which is {where}: only earlier steps' "
                    "outputs can be used",
                )
            )
        if isinstance(step_id, str):
            seen.setdefault(step_id, index)
    return problems


def _problems(
    source: Source, exc: ValidationError, model: type[BaseModel], prefix: Loc
) -> list[str]:
    out: list[str] = []
    for err in exc.errors(include_url=False):
        loc: Loc = (*prefix, *_clean(err["loc"]))
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            hint = did_you_mean(key, _fields_at(model, tuple(err["loc"][:-1])))
            out.append(source.problem(loc, f"unknown key {key!r}{hint}", at_key=True))
        elif kind == "missing":
            out.append(source.problem(loc[:-1], f"missing required key {loc[-1]!r}"))
        elif kind == "string_pattern_mismatch" and loc[-1] == "id":
            out.append(
                source.problem(
                    loc,
                    f"step id {err['input']!r} must be lowercase letters, "
                    "digits and _, starting with a letter",
                )
            )
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            out.append(source.problem(loc, message))
    return out


def _clean(loc: tuple[int | str, ...]) -> Loc:
    # Pydantic names union members in locations ("str", "tuple[str, ...]"); users never wrote them.
    return tuple(p for p in loc if isinstance(p, int) or not any(c in p for c in "[]() ,"))


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = _model_in(fields[part].annotation)
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
