"""A reader for the Go template syntax the bcce chart uses, for tests that run without Helm.

It finds actions and checks their block structure, resolves ``.Values`` paths (directly, or
through ``$x := .Values...`` and ``range $k, $v := .Values...`` variables), and strips the
actions out of a template the way Helm trims them, leaving YAML for every branch at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.S)
BLOCK_OPENERS = ("if", "range", "with", "define", "block")
VALUES_PATH = re.compile(r"\.Values((?:\.\w+)+)")
ASSIGN_VALUES = re.compile(r"^\$(\w+)\s*:?=\s*\$?\.Values((?:\.\w+)+)$")
RANGE_VALUES = re.compile(r"^range\s+\$\w+\s*,\s*\$(\w+)\s*:=\s*\$?\.Values((?:\.\w+)+)$")
VARIABLE_USE = re.compile(r"\$(\w+)((?:\.\w+)*)")
NINDENT = re.compile(r"\|\s*nindent\s+(\d+)\s*$")
INCLUDE = re.compile(r"\b(?:include|template)\s+\"([^\"]+)\"")
DEFINE = re.compile(r"^define\s+\"([^\"]+)\"")


@dataclass(frozen=True)
class Action:
    """One ``{{ ... }}`` action: its body and whether it trims whitespace on each side."""

    start: int
    end: int
    body: str
    trim_left: bool
    trim_right: bool

    @property
    def word(self) -> str:
        """The first word of the body (``if``, ``end``, ``include``, ``$x``...)."""
        return self.body.split(maxsplit=1)[0] if self.body else ""

    @property
    def is_comment(self) -> bool:
        return self.body.startswith("/*") and self.body.endswith("*/")


def actions(text: str) -> list[Action]:
    """Every action of a template, in order."""
    return [
        Action(m.start(), m.end(), m.group(2).strip(), m.group(1) == "-", m.group(3) == "-")
        for m in ACTION.finditer(text)
    ]


def structure_errors(text: str) -> list[str]:
    """Problems with the template's delimiters and blocks; empty when it is well formed."""
    errors: list[str] = []
    leftover = ACTION.sub("", text)
    for token in ("{{", "}}"):
        if token in leftover:
            errors.append(f"unbalanced {token!r}")
    stack: list[str] = []
    for action in actions(text):
        if action.is_comment or not action.body:
            continue
        word = action.word
        if word in BLOCK_OPENERS:
            if word == "define" and stack:
                errors.append(f"define inside {stack[-1]}")
            stack.append(word)
        elif word == "else":
            if not stack or stack[-1] not in ("if", "with", "range"):
                errors.append("else outside if/with/range")
        elif word == "end":
            if not stack:
                errors.append("end without an open block")
            else:
                stack.pop()
    errors += [f"{word} never closed with end" for word in stack]
    return errors


def included_names(text: str) -> set[str]:
    """Names passed to include/template."""
    return {name for a in actions(text) for name in INCLUDE.findall(a.body)}


def defined_names(text: str) -> set[str]:
    """Names of the templates defined in text."""
    return {m.group(1) for a in actions(text) if (m := DEFINE.match(a.body))}


def values_references(text: str) -> set[tuple[str, ...]]:
    """Values paths a template reads; a pool's keys come back under ``pools.*``."""
    aliases: dict[str, tuple[str, ...]] = {}
    found: set[tuple[str, ...]] = set()
    for action in actions(text):
        body = action.body
        if action.is_comment:
            continue
        if m := RANGE_VALUES.match(body):
            aliases[m.group(1)] = (*_split(m.group(2)), "*")
            continue
        if m := ASSIGN_VALUES.match(body):
            aliases[m.group(1)] = _split(m.group(2))
            continue
        found |= {_split(path) for path in VALUES_PATH.findall(body)}
        for name, rest in VARIABLE_USE.findall(body):
            if name in aliases:
                found.add(aliases[name] + _split(rest))
    return found


def _split(dotted: str) -> tuple[str, ...]:
    return tuple(part for part in dotted.split(".") if part)


def lookup(values: Any, path: tuple[str, ...]) -> bool:
    """Whether path exists in values; ``*`` means under every key of that map."""
    if not path:
        return True
    head, rest = path[0], path[1:]
    if not isinstance(values, dict):
        return False
    if head == "*":
        return bool(values) and all(lookup(child, rest) for child in values.values())
    return head in values and lookup(values[head], rest)


def leaf_paths(values: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every path to a non-map value (or an empty map), pools' names folded into ``*``."""
    if isinstance(values, dict) and values:
        for key, child in values.items():
            step = "*" if prefix == ("pools",) else key
            yield from leaf_paths(child, (*prefix, step))
    else:
        yield prefix


def strip_actions(text: str) -> str:
    """The template with every action taken out as Helm trims it, all branches kept.

    Control actions (blocks, assignments, ``fail``) leave nothing; ``... | nindent N``
    leaves an indented placeholder entry; any other action leaves the scalar ``x``.
    """
    out: list[str] = []
    cursor = 0
    trim_next = False
    for n, action in enumerate(actions(text)):
        segment = text[cursor : action.start]
        if trim_next:
            segment = segment.lstrip()
        out.append(segment)
        if action.trim_left:
            joined = "".join(out).rstrip()
            out = [joined]
        out.append(_replacement(action, n))
        cursor = action.end
        trim_next = action.trim_right
    tail = text[cursor:]
    out.append(tail.lstrip() if trim_next else tail)
    return _settle_placeholders("".join(out))


def _replacement(action: Action, n: int) -> str:
    body = action.body
    if (
        action.is_comment
        or not body
        or action.word in (*BLOCK_OPENERS, "else", "end", "fail")
        or re.match(r"^\$\w+\s*:?=", body)
    ):
        return ""
    if m := NINDENT.search(body):
        return "\n" + " " * int(m.group(1)) + f"@@BLOCK{n}@@"
    return "x"


def _settle_placeholders(text: str) -> str:
    """Make each block placeholder a list item or a map entry, as its neighbours are."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^( *)@@BLOCK(\d+)@@$", line)
        if not m:
            continue
        indent = len(m.group(1))
        as_item = any(_sibling_is_item(lines, i, step, indent) for step in (-1, 1))
        entry = "- x" if as_item else f"block{m.group(2)}: x"
        lines[i] = " " * indent + entry
    return "\n".join(lines)


def _sibling_is_item(lines: list[str], i: int, step: int, indent: int) -> bool:
    """Whether the nearest line at the block's own indent, before the parent, is a list item."""
    j = i + step
    while 0 <= j < len(lines):
        stripped = lines[j].strip()
        if stripped and not stripped.startswith("#") and "@@BLOCK" not in stripped:
            here = len(lines[j]) - len(lines[j].lstrip(" "))
            if here < indent:
                return False
            if here == indent:
                return stripped.startswith("- ")
        j += step
    return False
