"""Tests for bcce.source: safe YAML loading with positions, and ${VAR} substitution."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bcce.errors import WorkflowError
from bcce.source import Loc, Mark, Source, format_loc, load_source, substitute

WORKFLOW = """\
version: 1
steps:
  - id: build
    policy:
      timeout_seconds: 600
  - id: test
"""


def load(text: str | bytes, **limits: int) -> Source:
    raw = text.encode() if isinstance(text, str) else text
    return load_source(raw, "wf.yml", **limits)


def problems_of(text: str | bytes, **limits: int) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        load(text, **limits)
    return caught.value.problems


def billion_laughs(levels: int = 9) -> str:
    lines = ['lol0: &lol0 "lol"']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*lol{level - 1}"] * 10)
        lines.append(f"lol{level}: &lol{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def from_dict(data: object) -> Source:
    return Source(name="wf.yml", data=data, marks={}, key_marks={})


def lookup_in(values: dict[str, str]) -> Callable[[str], str | None]:
    return values.get


def substitution_problems(source: Source, values: dict[str, str]) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        substitute(source, lookup_in(values))
    return caught.value.problems


# Loading and positions


def test_a_workflow_loads_into_plain_python_data() -> None:
    assert load(WORKFLOW).data == {
        "version": 1,
        "steps": [{"id": "build", "policy": {"timeout_seconds": 600}}, {"id": "test"}],
    }


def test_a_nested_value_knows_its_line_and_column() -> None:
    source = load(WORKFLOW)
    assert source.marks[("steps", 0, "policy", "timeout_seconds")] == Mark(line=5, column=24)
    assert source.marks[("steps", 1, "id")] == Mark(line=6, column=9)


def test_a_key_knows_its_own_line_and_column() -> None:
    source = load(WORKFLOW)
    assert source.key_marks[("steps", 0, "policy", "timeout_seconds")] == Mark(line=5, column=7)


def test_mark_for_a_missing_key_falls_back_to_its_parent_mapping() -> None:
    source = load(WORKFLOW)
    assert source.mark_for(("steps", 1, "type")) == source.marks[("steps", 1)] == Mark(6, 5)


def test_mark_for_is_none_when_nothing_on_the_path_has_a_mark() -> None:
    assert from_dict({"a": 1}).mark_for(("a",)) is None


def test_where_names_the_file_line_column_and_path() -> None:
    source = load(WORKFLOW)
    loc: Loc = ("steps", 0, "policy", "timeout_seconds")
    assert source.where(loc) == "wf.yml:5:24 steps[0].policy.timeout_seconds"
    assert source.problem(loc, "too big") == "wf.yml:5:24 steps[0].policy.timeout_seconds: too big"


def test_where_leaves_out_the_line_part_when_there_is_no_mark() -> None:
    assert from_dict({}).where(("steps", 2)) == "wf.yml steps[2]"


def test_format_loc_writes_indexes_in_brackets_and_keys_with_dots() -> None:
    assert format_loc(("steps", 2, "policy", "limit")) == "steps[2].policy.limit"
    assert format_loc((0, "a")) == "[0].a"
    assert format_loc(()) == "(top level)"


def test_a_utf8_byte_order_mark_is_accepted_and_does_not_shift_columns() -> None:
    source = load(b"\xef\xbb\xbfversion: 1\n")
    assert source.data == {"version": 1}
    assert source.marks[("version",)] == Mark(1, 10)


def test_merge_keys_are_flattened_and_merged_values_point_at_their_definition() -> None:
    source = load("base: &base {retries: 2, timeout: 5}\nstep:\n  <<: *base\n  timeout: 9\n")
    assert source.data["step"] == {"retries": 2, "timeout": 9}
    assert source.marks[("step", "retries")] == Mark(1, 23)
    assert source.marks[("step", "timeout")] == Mark(4, 12)


def test_dates_and_bare_equals_signs_stay_plain_strings() -> None:
    assert load("on_date: 2024-01-31\nop: =\n").data == {"on_date": "2024-01-31", "op": "="}


def test_aliases_load_as_shared_values_with_marks_at_each_use() -> None:
    source = load("a: &x [1, 2]\nb: *x\n")
    assert source.data == {"a": [1, 2], "b": [1, 2]}
    assert source.marks[("b", 1)] == Mark(1, 11)


# Loading errors


def test_a_syntax_error_reports_yamls_own_problem_at_its_position() -> None:
    assert problems_of("version: 1\nsteps: id: x\n") == [
        "wf.yml:2:10 mapping values are not allowed here"
    ]


def test_a_second_document_is_a_syntax_error() -> None:
    assert problems_of("version: 1\n---\nsteps: []\n") == [
        "wf.yml:2:1 expected a single document in the stream, but found another document"
    ]


def test_a_duplicate_key_is_reported_at_its_second_occurrence() -> None:
    assert problems_of("steps:\n  - type: cmd\n    id: a\n    id: b\n") == [
        "wf.yml:4:5 steps[0].id: duplicate key 'id' (first at line 3)"
    ]


def test_a_key_yaml_reads_as_a_boolean_must_be_quoted() -> None:
    assert problems_of("on: push\n") == [
        "wf.yml:1:1 on: key must be a string, but YAML reads on as a boolean: quote it"
    ]


def test_every_key_problem_is_reported_at_once() -> None:
    assert problems_of("a: 1\na: 2\n1: x\nyes: y\n? [k]\n: z\n") == [
        "wf.yml:2:1 a: duplicate key 'a' (first at line 1)",
        "wf.yml:3:1 1: key must be a string, but YAML reads 1 as an integer: quote it",
        "wf.yml:4:1 yes: key must be a string, but YAML reads yes as a boolean: quote it",
        "wf.yml:5:3 (top level): key must be a string, not a list",
    ]


def test_a_quoted_key_that_looks_like_a_boolean_is_fine() -> None:
    assert load('"on": push\n').data == {"on": "push"}


def test_a_billion_laughs_document_fails_fast() -> None:
    started = time.perf_counter()
    problems = problems_of(billion_laughs(9))
    assert time.perf_counter() - started < 1.0
    assert problems == [
        "wf.yml:1:7: the document expands to more than 100000 nodes (YAML alias bomb?): "
        "remove the repeated aliases"
    ]


def test_a_merge_key_bomb_fails_before_construction_expands_it() -> None:
    lines = ["m0: &m0 {k: v}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}" for i in range(1, 40)]
    started = time.perf_counter()
    problems = problems_of("\n".join(lines))
    assert time.perf_counter() - started < 1.0
    assert "(YAML alias bomb?)" in problems[0]


def test_the_node_budget_can_be_lowered() -> None:
    assert "more than 10 nodes" in problems_of(billion_laughs(2), max_nodes=10)[0]


def test_a_file_over_the_size_cap_is_rejected_before_parsing() -> None:
    assert problems_of("a: [" * 20, max_bytes=16) == [
        "wf.yml: file is 80 bytes, over the 16-byte limit: "
        "split the workflow or raise BCCE_MAX_WORKFLOW_BYTES"
    ]


def test_invalid_utf8_is_reported_at_the_line_and_column_of_the_first_bad_byte() -> None:
    assert problems_of(b"version: 1\nname: caf\xe9 \xff\n") == [
        "wf.yml:2:10 byte 0xe9 is not valid UTF-8: save the file as UTF-8"
    ]


def test_a_control_character_is_reported_at_its_position() -> None:
    assert problems_of("version: 1\nname: a\x07\n") == [
        "wf.yml:2:8 character #x0007 is not allowed in YAML: remove it"
    ]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_file_is_rejected(text: str) -> None:
    assert problems_of(text) == [
        "wf.yml: the file is empty: a workflow needs `version: 1` and `steps`"
    ]


def test_a_top_level_list_is_rejected_at_1_1() -> None:
    assert problems_of("# steps\n- id: a\n") == [
        "wf.yml:1:1 (top level): the top level must be a mapping with `version: 1` and `steps`, "
        "not a list"
    ]


def test_a_top_level_string_is_rejected_at_1_1() -> None:
    assert "not a string" in problems_of("hello\n")[0]


def test_deep_nesting_is_rejected_instead_of_overflowing_the_stack() -> None:
    assert problems_of("a: " + "[" * 5000 + "]" * 5000) == [
        "wf.yml:1:103 the document is nested more than 100 levels deep: flatten it"
    ]


def test_deep_nesting_built_from_aliases_is_rejected() -> None:
    half = "[" * 60 + "x" + "]" * 60
    problems = problems_of(f"a: &a {half}\nb: {'[' * 60}*a{']' * 60}\n")
    assert problems == ["wf.yml:1:46 the document is nested more than 100 levels deep: flatten it"]


def test_a_recursive_alias_is_rejected() -> None:
    assert "nested more than 100 levels" in problems_of("a: &a [*a]\n")[0]


def test_python_tags_are_never_constructed() -> None:
    assert problems_of("run: !!python/object/apply:os.system [echo hi]\n") == [
        "wf.yml:1:6 run: unsupported YAML tag !!python/object/apply:os.system: "
        "use plain mappings, lists, strings, numbers, booleans and null"
    ]


def test_sets_binary_and_custom_tags_are_all_reported_together() -> None:
    problems = problems_of("a: !!set {x}\nb: !!binary aGk=\nc: !env HOME\n")
    assert [p.split(" unsupported YAML tag ")[1].split(":")[0] for p in problems] == [
        "!!set",
        "!!binary",
        "!env",
    ]


def test_infinite_and_nan_floats_are_rejected() -> None:
    assert problems_of("a: .inf\nb: .nan\nc: 1.5\n") == [
        "wf.yml:1:4 a: .inf is not a finite number",
        "wf.yml:2:4 b: .nan is not a finite number",
    ]


def test_an_integer_too_long_to_convert_is_a_problem_not_a_crash() -> None:
    assert problems_of("a: 1" + "0" * 5000 + "\n") == ["wf.yml:1:4 a: the integer is too large"]


# Substitution


def test_a_variable_is_replaced_inside_a_string() -> None:
    result = substitute(from_dict({"cmd": "echo ${WHO}!"}), lookup_in({"WHO": "world"}))
    assert result.data == {"cmd": "echo world!"}


def test_a_default_is_used_only_when_the_variable_is_unset() -> None:
    source = from_dict({"a": "${A:-fallback}", "b": "${B:-fallback}"})
    assert substitute(source, lookup_in({"A": "given"})).data == {"a": "given", "b": "fallback"}


def test_a_variable_set_but_empty_takes_the_default_as_in_the_shell() -> None:
    source = from_dict({"a": "${A:-fallback}", "b": "[${A}]"})
    assert substitute(source, lookup_in({"A": ""})).data == {"a": "fallback", "b": "[]"}


def test_an_empty_default_gives_an_empty_string() -> None:
    assert substitute(from_dict({"a": "x${A:-}y"}), lookup_in({})).data == {"a": "xy"}


def test_a_default_may_contain_colons_and_spaces() -> None:
    result = substitute(from_dict({"a": "${URL:-http://host:80/a b}"}), lookup_in({}))
    assert result.data == {"a": "http://host:80/a b"}


def test_a_doubled_dollar_escapes_a_reference() -> None:
    assert substitute(from_dict({"a": "$${HOME} and $HOME"}), lookup_in({})).data == {
        "a": "${HOME} and $HOME"
    }


def test_a_value_that_is_only_a_reference_stays_a_string() -> None:
    assert substitute(from_dict({"t": "${T}"}), lookup_in({"T": "600"})).data == {"t": "600"}


def test_keys_are_never_substituted() -> None:
    result = substitute(from_dict({"${A}": {"${A}": "${A}"}}), lookup_in({"A": "x"}))
    assert result.data == {"${A}": {"${A}": "x"}}


def test_non_string_scalars_are_left_untouched() -> None:
    data = {"n": 1, "f": 1.5, "b": True, "z": None, "l": [2, "${A}"]}
    result = substitute(from_dict(data), lookup_in({"A": "x"}))
    assert result.data == {"n": 1, "f": 1.5, "b": True, "z": None, "l": [2, "x"]}


def test_substitution_returns_a_new_source_and_keeps_the_marks() -> None:
    source = load("version: 1\nmodel: ${M}\n")
    result = substitute(source, lookup_in({"M": "claude"}))
    assert result.data == {"version": 1, "model": "claude"}
    assert source.data["model"] == "${M}"
    assert result.marks == source.marks and result.key_marks == source.key_marks
    assert result.name == "wf.yml"


def test_an_unset_variable_is_reported_at_its_value() -> None:
    source = load("version: 1\nsteps: []\nmodel: ${BEDROCK_MODEL_ID}\n")
    assert substitution_problems(source, {}) == [
        "wf.yml:3:8 model: ${BEDROCK_MODEL_ID} is not set: "
        "pass --var BEDROCK_MODEL_ID=... or export it"
    ]


@pytest.mark.parametrize("text", ["${1BAD}", "${A-B}", "${}", "${A:-${B}}"])
def test_a_malformed_reference_is_reported(text: str) -> None:
    problems = substitution_problems(from_dict({"a": text}), {"A": "x", "B": "y"})
    assert len(problems) == 1
    assert problems[0].startswith("wf.yml a: malformed variable reference '${")
    assert problems[0].endswith("': use ${NAME} or ${NAME:-default}")


def test_an_unclosed_reference_is_malformed() -> None:
    assert substitution_problems(from_dict({"a": "echo ${NAME"}), {"NAME": "x"}) == [
        "wf.yml a: malformed variable reference '${NAME': use ${NAME} or ${NAME:-default}"
    ]


def test_every_substitution_problem_is_reported_at_once() -> None:
    source = load("version: 1\na: ${X} ${Y}\nb:\n  - ${1BAD}\n  - ${Z:-ok}\n")
    assert substitution_problems(source, {}) == [
        "wf.yml:2:4 a: ${X} is not set: pass --var X=... or export it",
        "wf.yml:2:4 a: ${Y} is not set: pass --var Y=... or export it",
        "wf.yml:4:5 b[0]: malformed variable reference '${1BAD}': use ${NAME} or ${NAME:-default}",
    ]


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_text_without_a_dollar_is_never_changed(text: str) -> None:
    source = from_dict({"k": text, "l": [text, 1]})
    assert substitute(source, lookup_in({})).data == {"k": text, "l": [text, 1]}


@given(st.text())
def test_a_substituted_value_appears_exactly_and_is_never_expanded_again(value: str) -> None:
    result = substitute(from_dict({"k": "${X}"}), lookup_in({"X": value}))
    assert result.data == {"k": value}
