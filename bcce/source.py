"""Load a workflow YAML document safely, remembering where every value and key came from.

Nothing here knows the workflow schema. :func:`load_source` turns bytes into plain Python data
(dict, list, str, int, float, bool, None) plus the line and column of every node, so the
validation layer can report problems as ``file:line:col path: message``; :func:`substitute`
expands ``${VAR}`` references in string values. Only PyYAML's safe loader is used, so no tag can
build arbitrary objects, and alias bombs and deep nesting are stopped before they cost anything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bcce.errors import WorkflowError

Loc = tuple[str | int, ...]
"""A path to a value: mapping keys and list indexes, outermost first."""

_MAX_DEPTH = 100
_TOO_DEEP = f"the document is nested more than {_MAX_DEPTH} levels deep: flatten it"
_Y = "tag:yaml.org,2002:"
_MERGE = f"{_Y}merge"
# Built as plain strings: YAML 1.1 dates would become datetime objects, and the `=` and `<<`
# scalars have no safe constructor at all; workflow data must stay plain.
_AS_STR = (f"{_Y}timestamp", f"{_Y}value", _MERGE)
_KINDS = {
    f"{_Y}str": "a string",
    f"{_Y}int": "an integer",
    f"{_Y}float": "a number",
    f"{_Y}bool": "a boolean",
    f"{_Y}null": "null",
    f"{_Y}seq": "a list",
    f"{_Y}map": "a mapping",
} | dict.fromkeys(_AS_STR, "a string")
_STR_TAGS = (f"{_Y}str", *_AS_STR)
_REF = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)(?P<close>\}?)")
_NAME = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


@dataclass(frozen=True)
class Mark:
    """A position in the file, both numbers 1-based."""

    line: int
    column: int


def format_loc(loc: Loc) -> str:
    """Write a Loc as users read it.

    ("steps", 2, "policy", "timeout_seconds") -> "steps[2].policy.timeout_seconds";
    () -> "(top level)".
    """
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out or "(top level)"


@dataclass(frozen=True)
class Source:
    """A loaded workflow document: its plain data and where each node of it was written."""

    name: str
    data: Any
    marks: Mapping[Loc, Mark]
    key_marks: Mapping[Loc, Mark]

    def mark_for(self, loc: Loc) -> Mark | None:
        """The mark of loc, else of its longest prefix that has one.

        So a missing key points at the mapping it is missing from.
        """
        for end in range(len(loc), -1, -1):
            mark = self.marks.get(loc[:end])
            if mark is not None:
                return mark
        return None

    def where(self, loc: Loc, at_key: bool = False) -> str:
        """'wf.yml:14:7 steps[2].policy.timeout_seconds', or 'wf.yml steps[2]...' with no mark.

        With at_key, the position is that of the key naming loc (for unknown keys).
        """
        mark = (self.key_marks.get(loc) if at_key else None) or self.mark_for(loc)
        at = f"{self.name}:{mark.line}:{mark.column}" if mark else self.name
        return f"{at} {format_loc(loc)}"

    def problem(self, loc: Loc, message: str, at_key: bool = False) -> str:
        """f'{self.where(loc)}: {message}'."""
        return f"{self.where(loc, at_key)}: {message}"


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing to compose nesting deep enough to exhaust the Python stack."""

    yaml_constructors: ClassVar[dict[str | None, Any]] = {
        **yaml.SafeLoader.yaml_constructors,
        **dict.fromkeys(_AS_STR, yaml.SafeLoader.construct_yaml_str),
    }
    _depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self._depth += 1
        try:
            if self._depth > _MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in stubs
                raise yaml.composer.ComposerError(None, None, _TOO_DEEP, event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_source(
    raw: bytes, name: str, *, max_bytes: int = 1_048_576, max_nodes: int = 100_000
) -> Source:
    """Parse one YAML document into a Source; raises WorkflowError listing every problem."""
    if len(raw) > max_bytes:
        raise WorkflowError(
            [
                f"{name}: file is {len(raw)} bytes, over the {max_bytes}-byte limit: "
                "split the workflow or raise BCCE_MAX_WORKFLOW_BYTES"
            ]
        )
    text = _decode(raw, name).removeprefix("\ufeff")
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None or (node.tag == f"{_Y}null" and node.value == ""):
                raise WorkflowError(
                    [f"{name}: the file is empty: a workflow needs `version: 1` and `steps`"]
                )
            if not isinstance(node, MappingNode):
                raise WorkflowError(
                    [
                        f"{name}:1:1 (top level): the top level must be a mapping "
                        f"with `version: 1` and `steps`, not {_kind(node)}"
                    ]
                )
            _check(node, name, max_nodes, loader)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - before.rfind("\n")
        raise WorkflowError(
            [
                f"{name}:{line}:{col} character #x{exc.character:04x} is not "
                "allowed in YAML: remove it"
            ]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else f"{name}:"
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and problem.startswith("but "):  # "expected a single document, but ..."
            problem = f"{exc.context}, {problem}"
        raise WorkflowError([f"{at} {problem}"]) from None
    marks: dict[Loc, Mark] = {}
    key_marks: dict[Loc, Mark] = {}
    for loc, sub in _walk(node, name, max_nodes, last_wins=True):
        marks[loc] = _mark(sub)
        if isinstance(sub, MappingNode):
            key_marks.update(((*loc, k.value), _mark(k)) for k, _ in sub.value)
    return Source(name, data, marks, key_marks)


def substitute(source: Source, lookup: Callable[[str], str | None]) -> Source:
    """Expand ``${NAME}``, ``${NAME:-default}`` and the ``$${`` escape in every string value.

    Keys and non-string scalars are left alone, and an expanded value is never expanded again.
    Raises WorkflowError listing every unset or malformed reference.
    """
    problems: list[str] = []

    def expand(value: Any, loc: Loc) -> Any:
        if isinstance(value, str):
            return _expand(value, lookup, lambda msg: problems.append(source.problem(loc, msg)))
        if isinstance(value, dict):
            return {k: expand(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v, (*loc, i)) for i, v in enumerate(value)]
        return value

    data = expand(source.data, ())
    if problems:
        raise WorkflowError(problems)
    return replace(source, data=data)


def _expand(text: str, lookup: Callable[[str], str | None], report: Callable[[str], None]) -> str:
    def one(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        ref = _NAME.fullmatch(match["body"])
        if not match["close"] or ref is None or "${" in (ref["default"] or ""):
            shown = whole if len(whole) <= 40 else whole[:37] + "..."
            report(f"malformed variable reference {shown!r}: use ${{NAME}} or ${{NAME:-default}}")
            return whole
        value = lookup(ref["name"])
        if not value and ref["default"] is not None:  # as in the shell: set but empty also defaults
            value = ref["default"]
        if value is None:
            report(f"${{{ref['name']}}} is not set: pass --var {ref['name']}=... or export it")
            return whole
        return value

    return _REF.sub(one, text) if "$" in text else text


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        col = len(raw[line_start : exc.start].decode("utf-8").removeprefix("\ufeff")) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        raise WorkflowError(
            [
                f"{name}:{line}:{col} byte 0x{raw[exc.start]:02x} is not valid "
                "UTF-8: save the file as UTF-8"
            ]
        ) from None


def _check(root: MappingNode, name: str, max_nodes: int, loader: _Loader) -> None:
    # Runs before construction, which would otherwise expand `<<: [*a, *a]` merge bombs itself.
    problems: list[str] = []
    seen: set[Node] = set()
    for loc, node in _walk(root, name, max_nodes, last_wins=False):
        if node in seen:
            continue
        seen.add(node)
        if node.tag not in _KINDS:
            tag = node.tag.replace(_Y, "!!")
            problems.append(
                _at(
                    name,
                    node,
                    loc,
                    f"unsupported YAML tag {tag}: use plain "
                    "mappings, lists, strings, numbers, booleans and null",
                )
            )
        elif isinstance(node, ScalarNode) and node.tag == f"{_Y}int":
            try:
                loader.construct_yaml_int(node)
            except ValueError:
                problems.append(_at(name, node, loc, "the integer is too large"))
        elif isinstance(node, ScalarNode) and node.tag == f"{_Y}float":
            if not math.isfinite(loader.construct_yaml_float(node)):
                problems.append(_at(name, node, loc, f"{node.value} is not a finite number"))
        elif isinstance(node, MappingNode):
            first: dict[str, Node] = {}
            for key, _ in node.value:
                text = _text(key)
                if key.tag == _MERGE:
                    continue
                if not isinstance(key, ScalarNode) or key.tag not in _STR_TAGS:
                    message = (
                        f"key must be a string, but YAML reads {text} as {_kind(key)}: quote it"
                        if isinstance(key, ScalarNode)
                        else f"key must be a string, not {_kind(key)}"
                    )
                    where = (*loc, text) if isinstance(key, ScalarNode) else loc
                    problems.append(_at(name, key, where, message))
                elif text in first:
                    line = first[text].start_mark.line + 1
                    problems.append(
                        _at(
                            name,
                            key,
                            (*loc, text),
                            f"duplicate key {text!r} (first at line {line})",
                        )
                    )
                else:
                    first[text] = key
    if problems:
        raise WorkflowError(problems)


def _walk(root: Node, name: str, max_nodes: int, *, last_wins: bool) -> Iterator[tuple[Loc, Node]]:
    # Iterative, and counting every visit (an alias re-visits its target), so alias bombs,
    # recursive aliases and deep nesting all stop at a budget instead of exhausting memory.
    stack: list[tuple[Loc, Node]] = [((), root)]
    visited = 0
    while stack:
        loc, node = stack.pop()
        visited += 1
        mark = node.start_mark
        if visited > max_nodes:
            raise WorkflowError(
                [
                    f"{name}:{mark.line + 1}:{mark.column + 1}: the document expands "
                    f"to more than {max_nodes} nodes (YAML alias bomb?): remove the "
                    "repeated aliases"
                ]
            )
        if len(loc) >= _MAX_DEPTH:
            raise WorkflowError([f"{name}:{mark.line + 1}:{mark.column + 1} {_TOO_DEEP}"])
        yield loc, node
        if isinstance(node, MappingNode):
            pairs = [((*loc, _text(k)), v) for k, v in node.value]
            if last_wins:  # after merge keys are flattened, the last of equal keys is the one kept
                pairs = list(dict(pairs).items())
            stack.extend(reversed(pairs))
        elif isinstance(node, SequenceNode):
            stack.extend(reversed([((*loc, i), v) for i, v in enumerate(node.value)]))


def _at(name: str, node: Node, loc: Loc, message: str) -> str:
    return Source(name, None, {loc: _mark(node)}, {}).problem(loc, message)


def _mark(node: Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _text(key: Node) -> str:
    return str(key.value) if isinstance(key, ScalarNode) else "?"


def _kind(node: Node) -> str:
    return _KINDS.get(node.tag, f"a {node.tag.replace(_Y, '!!')} value")
