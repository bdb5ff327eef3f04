"""A run's chain as a Mermaid or Graphviz DOT diagram. Pure: text in, text out.

Each step is drawn as its policy gate (on the ``policy`` queue) followed by the step itself,
each node inside the pool (queue) that runs it, with edges in chain order. For a run, each
step also shows its status, as text and as a colour. Anything with a workflow name and steps
carrying ``id``, ``type`` and ``queue`` can be drawn: a compiled :class:`~bcce.compiler.Plan`,
or a :class:`Chart` of a run's step records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import PurePath
from typing import Protocol

from bcce.errors import UsageError
from bcce.records import StepStatus
from bcce.steptypes import POLICY_QUEUE

MERMAID = "mermaid"
DOT = "dot"
FORMATS = (MERMAID, DOT)
EXTENSIONS = {".mmd": MERMAID, ".mermaid": MERMAID, ".dot": DOT, ".gv": DOT}
PLAIN_EXTENSIONS = ("", ".txt")
"""Output extensions that name no language: ``--format`` decides, else mermaid."""
IMAGE_EXTENSIONS = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".gif")
"""Outputs refused with a hint to render the text with mmdc or dot."""

_GREEN, _RED, _MAGENTA = ("#c8e6c9", "#2e7d32"), ("#ffcdd2", "#c62828"), ("#f8c8f8", "#a000a0")
_GREY, _CYAN = ("#e0e0e0", "#757575"), ("#b2ebf2", "#00838f")
COLOURS: Mapping[str, tuple[str, str]] = {
    StepStatus.SUCCEEDED: _GREEN,
    StepStatus.FAILED: _RED,
    StepStatus.TIMED_OUT: _RED,
    StepStatus.DENIED: _MAGENTA,
    StepStatus.CANCELLED: _GREY,
    StepStatus.PENDING: _GREY,
    StepStatus.ALLOWED: _CYAN,
    StepStatus.RUNNING: _CYAN,
    StepStatus.RETRYING: _CYAN,
}
"""(fill, border) colour of a step in each status; other statuses are drawn uncoloured."""

# `%` keeps `%%{init}%%` directives out; `#` keeps text from reading as an entity code.
_MERMAID_CODES = str.maketrans({c: f"#{ord(c)};" for c in '"#%&<>`'})
_DOT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


class StepLike(Protocol):
    """What a diagram needs of a step: a PlannedStep, a StepRecord and a Node all fit."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def queue(self) -> str: ...


class Drawable(Protocol):
    """What a diagram draws: a workflow name and its steps in chain order (a Plan fits)."""

    @property
    def workflow(self) -> str: ...
    @property
    def steps(self) -> Sequence[StepLike]: ...


@dataclass(frozen=True)
class Node:
    """One step as drawn: its id, step type and the queue of the pool that runs it."""

    id: str
    type: str
    queue: str


@dataclass(frozen=True)
class Chart:
    """A :class:`Drawable` with no compiled plan behind it, e.g. a run's step records."""

    workflow: str
    steps: tuple[Node, ...]

    @classmethod
    def of(cls, workflow: str, steps: Iterable[StepLike]) -> Chart:
        """The chart of a workflow's steps, given in chain order."""
        return cls(workflow, tuple(Node(s.id, s.type, s.queue) for s in steps))


@dataclass(frozen=True)
class _Box:
    """One node to draw: a safe identifier, its label lines (raw text) and its pool."""

    name: str
    label: tuple[str, ...]
    queue: str
    gate: bool
    status: str | None


def _boxes(plan: Drawable, statuses: Mapping[str, str]) -> tuple[list[_Box], dict[str, str]]:
    """Every node in chain order, and each queue's pool identifier (policy first)."""
    queues = list(dict.fromkeys([POLICY_QUEUE, *(s.queue for s in plan.steps)]))
    wanted = [f"{kind}_{s.id}" for s in plan.steps for kind in ("gate", "step")]
    names = _identifiers([*wanted, *(f"pool_{q}" for q in queues)])
    chain = []
    for index, step in enumerate(plan.steps):
        status = statuses.get(step.id)
        label = (step.id, f"{step.type} on {step.queue}", *([status] if status else []))
        chain.append(_Box(names[2 * index], ("gate", step.id), POLICY_QUEUE, True, None))
        chain.append(_Box(names[2 * index + 1], label, step.queue, False, status))
    return chain, dict(zip(queues, names[len(wanted) :], strict=True))


def _identifiers(names: list[str]) -> list[str]:
    """Each name reduced to ``[A-Za-z0-9_]``, made unique in order with a numeric suffix."""
    out: list[str] = []
    for name in names:
        base = re.sub(r"\W", "_", name, flags=re.ASCII)
        ident, n = base, 1
        while ident in out:
            n += 1
            ident = f"{base}_{n}"
        out.append(ident)
    return out


def _lines(parts: Iterable[str]) -> list[str]:
    """The lines of parts, each unprintable character (tab, control) turned into a space."""
    return [
        "".join(c if c.isprintable() else " " for c in line)
        for part in parts
        for line in part.splitlines() or [""]
    ]


def _mermaid_label(parts: Iterable[str]) -> str:
    """A quoted Mermaid label; entity codes for what Mermaid or HTML would interpret."""
    return '"' + "<br>".join(line.translate(_MERMAID_CODES) for line in _lines(parts)) + '"'


def _dot_label(parts: Iterable[str]) -> str:
    """A quoted DOT string, never an HTML label, so ``<`` and ``>`` stay literal text."""
    return '"' + "\\n".join(line.translate(_DOT_ESCAPES) for line in _lines(parts)) + '"'


def _edges(chain: list[_Box]) -> list[tuple[str, str]]:
    return [(a.name, b.name) for a, b in pairwise(chain)]


def _coloured(chain: list[_Box]) -> dict[str, list[str]]:
    """Node names by status, for the statuses that have a colour, in :data:`COLOURS` order."""
    by_status = {s: [b.name for b in chain if b.status == s] for s in COLOURS}
    return {str(s): names for s, names in by_status.items() if names}


def mermaid(plan: Drawable, statuses: Mapping[str, str] | None = None) -> str:
    """The plan as a Mermaid flowchart; statuses (step id -> status) colour a run's steps."""
    chain, pools = _boxes(plan, statuses or {})
    title = json.dumps(plan.workflow).replace("<", "\\u003c").replace(">", "\\u003e")
    out = ["---", f"title: {title}", "---", "flowchart LR"]
    for queue, pool in pools.items():
        out.append(f"  subgraph {pool}[{_mermaid_label([queue])}]")
        for box in (b for b in chain if b.queue == queue):
            start, end = ("{{", "}}") if box.gate else ("[", "]")
            out.append(f"    {box.name}{start}{_mermaid_label(box.label)}{end}")
        out.append("  end")
    out += [f"  {a} --> {b}" for a, b in _edges(chain)]
    for status, names in _coloured(chain).items():
        fill, border = COLOURS[status]
        out.append(f"  classDef {status} fill:{fill},stroke:{border},color:#000")
        out.append(f"  class {','.join(names)} {status}")
    return "\n".join(out) + "\n"


def dot(plan: Drawable, statuses: Mapping[str, str] | None = None) -> str:
    """The plan as a Graphviz DOT digraph; statuses (step id -> status) colour a run's steps."""
    chain, pools = _boxes(plan, statuses or {})
    colours = {n: COLOURS[s] for s, names in _coloured(chain).items() for n in names}
    out = ["digraph bcce {", f"  label={_dot_label([plan.workflow])};", "  labelloc=t;"]
    out += ["  rankdir=LR;", "  node [shape=box];"]
    for queue, pool in pools.items():
        out += [f"  subgraph cluster_{pool} {{", f"    label={_dot_label([queue])};"]
        for box in (b for b in chain if b.queue == queue):
            attrs = [f"label={_dot_label(box.label)}"]
            if box.gate:
                attrs.append("shape=hexagon")
            if box.name in colours:
                fill, border = colours[box.name]
                attrs.append(f'style=filled, fillcolor="{fill}", color="{border}"')
            out.append(f"    {box.name} [{', '.join(attrs)}];")
        out.append("  }")
    out += [f"  {a} -> {b};" for a, b in _edges(chain)]
    return "\n".join(out) + "\n}\n"


RENDERERS: Mapping[str, Callable[[Drawable, Mapping[str, str] | None], str]] = {
    MERMAID: mermaid,
    DOT: dot,
}
"""Each diagram language's function, by ``--format`` name."""


def format_for(output: PurePath | None, requested: str | None = None) -> str:
    """The language to write: the output's extension, else ``requested``, else mermaid.

    Raises UsageError when the extension names another language than ``requested``, or
    one that diagram text cannot honour (``.png``, ``.svg``: render the text with mmdc or dot).
    """
    if requested is not None and requested not in FORMATS:
        raise UsageError(f"unknown diagram format {requested!r}; known: {', '.join(FORMATS)}")
    suffix = output.suffix.lower() if output is not None else ""
    if output is None or suffix in PLAIN_EXTENSIONS:
        return requested or MERMAID
    if suffix in IMAGE_EXTENSIONS:
        stem = output.with_suffix("")
        raise UsageError(
            f"cannot write an image to {output}: write {stem}.mmd or {stem}.dot and render it "
            f"with `mmdc -i {stem}.mmd -o {output}` or `dot -T{suffix[1:]} {stem}.dot -o {output}`"
        )
    implied = EXTENSIONS.get(suffix)
    if implied is None:
        raise UsageError(
            f"cannot tell the diagram format of {output}: use .mmd or .mermaid (Mermaid), "
            ".dot or .gv (Graphviz), or .txt with --format"
        )
    if requested is not None and requested != implied:
        raise UsageError(
            f"--format {requested} does not match {output}, a {implied} file: "
            "drop --format or change the extension"
        )
    return implied
