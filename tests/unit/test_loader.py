"""Tests for bcce.loader: BCCE v1 workflow files to validated Workflows, every problem at once.

Each test writes its workflow as ``wf.yml`` in a temporary working directory, so problems read
exactly as ``bcce workflow validate wf.yml`` prints them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from bcce.errors import WorkflowError
from bcce.loader import load_workflow
from bcce.steptypes import registry
from bcce.workflow import AgentStep, ApplyDiffStep, CmdStep, PromptStep, Workflow

FIXTURES = Path(__file__).parent / "workflows"
RUN_ID = "2026-11-26T14-03-07-a1b2c3"


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def load(
    path: Path | str,
    *,
    variables: Mapping[str, str] | None = None,
    run_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Workflow:
    return load_workflow(
        Path(path), registry(), variables=variables, run_id=run_id, environ=environ or {}
    )


def load_text(text: str, **kwargs: object) -> Workflow:
    Path("wf.yml").write_text(text, encoding="utf-8")
    return load("wf.yml", **kwargs)  # type: ignore[arg-type]


def problems_of(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        load_text(text, **kwargs)
    return caught.value.problems


ONE_STEP = """\
version: 1
workflow: w
steps:
  - id: a
    type: cmd
    command: echo {cmd}
"""


# Valid files


def test_a_file_with_every_v1_key_loads_into_typed_steps() -> None:
    workflow = load(FIXTURES / "every_key.yml", run_id=RUN_ID)

    assert [type(s) for s in workflow.steps] == [PromptStep, AgentStep, CmdStep, ApplyDiffStep]
    assert workflow.snapshot() == {
        "version": 1,
        "workflow": "Every v1 key",
        "model": "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "guardrails": ["pii-basic", "secrets-default"],
        "env": {
            "max_runtime_seconds": 1200,
            "artifacts_dir": f".bcce_runs/{RUN_ID}",
            "seed": 42,
            "LOG_LEVEL": "debug",
            "WORKERS": 3,
        },
        "steps": [
            {
                "id": "analyze",
                "type": "prompt",
                "prompt_file": "prompts/analyze.md",
                # read when the workflow loads, so workers on other hosts need no copy
                "prompt": "Analyse the code in src/ and list what should change.\n",
                "available_tools": ["ReadFile", "Search"],
                "inputs": {"paths": ["src/**", "test/**"], "file_size_limit_kb": 512},
            },
            {
                "id": "fix_bugs",
                "type": "agent",
                "on_error": "retry",
                "approve": True,
                "available_tools": ["ReadFile", "Search", "Diff", "Apply", "Cmd", "Bash"],
                "policy": {
                    "timeout_seconds": 600,
                    "max_files": 50,
                    "max_edits": 10,
                    "allowed_paths": ["src/**", "!src/secrets/**"],
                    "cmd_allowlist": ["npm", "git status"],
                },
            },
            {
                "id": "run_tests",
                "type": "cmd",
                "command": "npm test",
                "on_error": "continue",
                "policy": {"timeout_seconds": 300, "cmd_allowlist": ["npm"]},
            },
            {"id": "apply_fixes", "type": "apply_diff", "approve": False},
        ],
    }


def test_free_env_keys_become_step_environment_variables_as_text() -> None:
    workflow = load(FIXTURES / "every_key.yml")
    assert workflow.env.variables() == {"LOG_LEVEL": "debug", "WORKERS": "3"}
    assert (workflow.env.max_runtime_seconds, workflow.env.seed) == (1200, 42)


def test_the_snapshot_stored_with_a_run_validates_back_to_the_same_workflow() -> None:
    from bcce.loader import from_snapshot

    workflow = load(FIXTURES / "every_key.yml", run_id=RUN_ID)
    assert from_snapshot(workflow.snapshot(), registry()) == workflow


def test_the_published_v1_example_validates() -> None:
    workflow = load(FIXTURES / "published_v1.yml", environ={"BEDROCK_MODEL_ID": "claude-x"})
    assert workflow.workflow == "Test and Fix"
    assert workflow.model == "claude-x"
    assert [(s.id, s.type) for s in workflow.steps] == [
        ("find_issues", "prompt"),
        ("fix_issues", "agent"),
        ("verify_fixes", "cmd"),
        ("apply_fixes", "apply_diff"),
    ]


def test_the_published_agent_example_validates_with_the_run_id_in_its_artifacts_dir() -> None:
    workflow = load(FIXTURES / "published_agent.yml", run_id=RUN_ID)
    assert workflow.env.artifacts_dir == f".bcce_runs/{RUN_ID}"
    assert workflow.step("agent_step").policy is not None


def test_the_additive_extensions_validate() -> None:
    workflow = load_text(
        """\
version: 1
workflow: extensions
steps:
  - id: ask
    type: prompt
    prompt: "Summarise the README"
    model: claude-haiku
    retries: 5
    on_error: retry
  - id: look
    type: agent
    policy:
      max_edits: 0
  - id: pipe
    type: cmd
    shell: true
    command: "ls | wc -l"
"""
    )
    ask, look, pipe = workflow.steps
    assert (ask.prompt, ask.model, ask.max_attempts) == ("Summarise the README", "claude-haiku", 6)
    assert look.policy is not None and look.policy.max_edits == 0
    assert isinstance(pipe, CmdStep) and pipe.argv() == ["sh", "-c", "ls | wc -l"]


def test_a_file_that_cannot_be_read_is_one_problem_naming_it() -> None:
    with pytest.raises(WorkflowError) as caught:
        load("missing.yml")
    assert caught.value.problems == [
        "missing.yml: cannot read the workflow: No such file or directory"
    ]


# Unknown keys


def test_an_unknown_step_key_is_reported_with_its_line_and_a_suggestion() -> None:
    assert problems_of(
        """\
version: 1
workflow: w
steps:
  - id: a
    type: cmd
    comand: echo hi
"""
    ) == ["wf.yml:6:5 steps[0].comand: unknown key 'comand' (did you mean 'command'?)"]


def test_an_unknown_top_level_key_is_reported_with_a_suggestion() -> None:
    assert problems_of(
        "version: 1\nworkflow: w\nmodle: x\nsteps:\n  - {id: a, type: apply_diff}\n"
    ) == ["wf.yml:3:1 modle: unknown key 'modle' (did you mean 'model'?)"]


def test_an_unknown_nested_policy_key_is_reported_with_its_full_path() -> None:
    assert problems_of(
        """\
version: 1
workflow: w
steps:
  - id: a
    type: cmd
    command: echo
    policy:
      timeout_second: 3
"""
    ) == [
        "wf.yml:8:7 steps[0].policy.timeout_second: unknown key 'timeout_second' "
        "(did you mean 'timeout_seconds'?)"
    ]


def test_an_unknown_key_without_a_close_match_gets_no_suggestion() -> None:
    [problem] = problems_of(ONE_STEP.format(cmd="hi") + "    xyzzy: 1\n")
    assert problem.endswith("steps[0].xyzzy: unknown key 'xyzzy'")


def test_an_unknown_key_points_at_the_key_itself_not_at_its_value() -> None:
    problems = problems_of(
        """\
version: 1
workflow: w
steps:
  - id: a
    type: cmd
    comand: echo hi
  - id: b
    type: cmd
    command: echo
    polcy:
      timeout_seconds: 3
"""
    )
    assert problems == [
        "wf.yml:6:5 steps[0].comand: unknown key 'comand' (did you mean 'command'?)",
        "wf.yml:10:5 steps[1].polcy: unknown key 'polcy' (did you mean 'policy'?)",
    ]


# Step problems, exact messages


def test_a_step_id_that_breaks_the_pattern_is_reported_at_the_id() -> None:
    assert problems_of(
        """\
version: 1
workflow: w
steps:
  - id: Build-All
    type: apply_diff
"""
    ) == [
        "wf.yml:4:9 steps[0].id: step id 'Build-All' must be lowercase letters, digits and _, "
        "starting with a letter"
    ]


def test_a_duplicate_step_id_names_the_first_step_that_used_it() -> None:
    assert problems_of(
        """\
version: 1
workflow: w
steps:
  - id: build
    type: apply_diff
  - id: test
    type: apply_diff
  - id: build
    type: apply_diff
"""
    ) == ["wf.yml:8:9 steps[2].id: duplicate step id 'build' (first used by steps[0])"]


def test_an_unknown_step_type_is_reported_with_a_suggestion_and_the_known_types() -> None:
    assert problems_of(
        """\
version: 1
workflow: w
steps:
  - id: a
    type: comand
"""
    ) == [
        "wf.yml:5:11 steps[0].type: unknown step type 'comand' (did you mean 'cmd'?); "
        "known types: agent, apply_diff, cmd, prompt"
    ]


def test_a_step_without_a_type_is_reported_at_the_step() -> None:
    assert problems_of("version: 1\nworkflow: w\nsteps:\n  - id: a\n") == [
        "wf.yml:4:5 steps[0]: missing required key 'type'"
    ]


def test_a_cmd_step_without_a_command_is_reported() -> None:
    assert problems_of("version: 1\nworkflow: w\nsteps:\n  - id: a\n    type: cmd\n") == [
        "wf.yml:4:5 steps[0]: a cmd step needs `command`"
    ]


def test_a_prompt_step_without_a_prompt_or_prompt_file_is_reported() -> None:
    assert problems_of("version: 1\nworkflow: w\nsteps:\n  - id: a\n    type: prompt\n") == [
        "wf.yml:4:5 steps[0]: a prompt step needs `prompt_file` or an inline `prompt`"
    ]


PROMPT_FILE_STEP = "version: 1\nworkflow: w\nsteps:\n  - id: a\n    type: prompt\n{keys}"


def test_a_prompt_file_is_read_relative_to_the_workflow_into_the_snapshot() -> None:
    Path("prompts").mkdir()
    Path("prompts/ask.md").write_text("Explain {{ steps.a.output }}\n")
    with pytest.raises(WorkflowError, match="template refers to 'a', which is this step"):
        load_text(PROMPT_FILE_STEP.format(keys="    prompt_file: prompts/ask.md\n"))
    Path("prompts/ask.md").write_text("Explain the code\n")
    workflow = load_text(PROMPT_FILE_STEP.format(keys="    prompt_file: prompts/ask.md\n"))
    assert workflow.steps[0].prompt == "Explain the code\n"
    assert workflow.snapshot()["steps"][0]["prompt_file"] == "prompts/ask.md"


def test_a_missing_prompt_file_is_reported_where_it_is_named() -> None:
    assert problems_of(PROMPT_FILE_STEP.format(keys="    prompt_file: nope.md\n")) == [
        "wf.yml:6:18 steps[0].prompt_file: cannot read prompt file 'nope.md': "
        "No such file or directory"
    ]


def test_prompt_and_prompt_file_together_are_reported() -> None:
    Path("p.md").write_text("x")
    keys = "    prompt_file: p.md\n    prompt: inline\n"
    assert problems_of(PROMPT_FILE_STEP.format(keys=keys)) == [
        "wf.yml:6:18 steps[0].prompt_file: give `prompt` or `prompt_file`, not both"
    ]


def test_an_agent_step_without_a_policy_is_reported() -> None:
    assert problems_of("version: 1\nworkflow: w\nsteps:\n  - id: a\n    type: agent\n") == [
        "wf.yml:4:5 steps[0]: an agent step needs a `policy` block"
    ]


def test_an_on_error_value_outside_fail_continue_retry_is_reported() -> None:
    assert problems_of(ONE_STEP.format(cmd="hi") + "    on_error: ignore\n") == [
        "wf.yml:7:15 steps[0].on_error: Input should be 'fail', 'continue' or 'retry'"
    ]


def test_an_unknown_tool_is_reported_at_its_index() -> None:
    assert problems_of(ONE_STEP.format(cmd="hi") + "    available_tools: [ReadFile, Hammer]\n") == [
        "wf.yml:7:33 steps[0].available_tools[1]: "
        "Input should be 'ReadFile', 'Search', 'Diff', 'Apply', 'Cmd' or 'Bash'"
    ]


def test_a_workflow_without_version_workflow_or_steps_lists_all_three() -> None:
    assert problems_of("model: m\n") == [
        "wf.yml:1:1 (top level): missing required key 'version'",
        "wf.yml:1:1 (top level): missing required key 'workflow'",
        "wf.yml:1:1 (top level): missing required key 'steps'",
    ]


def test_version_2_and_an_empty_step_list_are_both_reported() -> None:
    assert problems_of("version: 2\nworkflow: w\nsteps: []\n") == [
        "wf.yml:1:10 version: Input should be 1",
        "wf.yml:3:8 steps: `steps` must be a list of at least one step",
    ]


def test_several_problems_in_one_file_are_all_reported_at_once() -> None:
    problems = problems_of(
        """\
version: 1
workflow: demo
env:
  LIST: [1, 2]
steps:
  - id: Bad-Id
    type: cmd
    command: echo
  - id: two
    type: comand
  - id: three
    type: cmd
  - id: four
    type: prompt
  - id: five
    type: agent
  - id: six
    type: cmd
    command: echo
    on_error: ignore
  - id: seven
    type: cmd
    comand: echo
"""
    )
    assert len(problems) == 8
    assert problems[0].startswith("wf.yml:") and problems[0].endswith(
        "env.LIST must be a string, number or boolean"
    )
    assert problems[1:7] == [
        "wf.yml:6:9 steps[0].id: step id 'Bad-Id' must be lowercase letters, digits and _, "
        "starting with a letter",
        "wf.yml:10:11 steps[1].type: unknown step type 'comand' (did you mean 'cmd'?); "
        "known types: agent, apply_diff, cmd, prompt",
        "wf.yml:11:5 steps[2]: a cmd step needs `command`",
        "wf.yml:13:5 steps[3]: a prompt step needs `prompt_file` or an inline `prompt`",
        "wf.yml:15:5 steps[4]: an agent step needs a `policy` block",
        "wf.yml:20:15 steps[5].on_error: Input should be 'fail', 'continue' or 'retry'",
    ]
    assert problems[7] == (
        "wf.yml:23:5 steps[6].comand: unknown key 'comand' (did you mean 'command'?)"
    )


def test_duplicate_ids_and_bad_templates_are_reported_together_with_schema_problems() -> None:
    problems = problems_of(
        """\
version: 1
workflow: w
steps:
  - id: a
    type: cmd
    command: echo hi
    on_error: ignore
  - id: a
    type: cmd
    command: echo "{{ steps.nope.output }}"
"""
    )
    assert "wf.yml:7:15 steps[0].on_error: Input should be 'fail', 'continue' or 'retry'" in (
        problems
    )
    assert "wf.yml:8:9 steps[1].id: duplicate step id 'a' (first used by steps[0])" in problems
    assert any("template refers to 'nope'" in p for p in problems)


# Templates


def test_a_template_may_use_an_earlier_steps_output() -> None:
    workflow = load_text(
        """\
version: 1
workflow: w
steps:
  - id: a
    type: cmd
    command: echo hi
  - id: b
    type: cmd
    command: wc -c "{{ steps.a.output_file }}" "{{steps.a.output}}"
"""
    )
    assert workflow.step("b").referenced_steps() == {"a"}


def test_a_template_referring_to_a_later_or_missing_step_is_reported() -> None:
    assert problems_of(
        """\
version: 1
workflow: w
steps:
  - id: a
    type: cmd
    command: echo "{{ steps.b.output }}"
  - id: b
    type: cmd
    command: echo "{{ steps.zz.output }}"
"""
    ) == [
        "wf.yml:4:5 steps[0]: template refers to 'b', which is a later step: "
        "only earlier steps' outputs can be used",
        "wf.yml:7:5 steps[1]: template refers to 'zz', which is no step: "
        "only earlier steps' outputs can be used",
    ]


def test_a_template_referring_to_its_own_step_is_reported() -> None:
    assert problems_of(ONE_STEP.format(cmd='"{{ steps.a.output }}"')) == [
        "wf.yml:4:5 steps[0]: template refers to 'a', which is this step: "
        "only earlier steps' outputs can be used"
    ]


@pytest.mark.parametrize(
    "command",
    ['["{{ steps.a.output_file }}", "--flag"]', "'\"{{ steps.a.output }}\" --flag'"],
    ids=["list", "quoted-string"],
)
def test_the_executable_cannot_come_from_a_template(command: str) -> None:
    assert problems_of(
        ONE_STEP.format(cmd="hi") + f"  - id: b\n    type: cmd\n    command: {command}\n"
    ) == ["wf.yml:7:5 steps[1]: the executable itself cannot come from a template"]


def test_an_unquoted_template_cannot_be_the_executable_either() -> None:
    assert problems_of(
        ONE_STEP.format(cmd="hi")
        + "  - id: b\n    type: cmd\n    command: '{{ steps.a.output }} --x'\n"
    ) == ["wf.yml:7:5 steps[1]: the executable itself cannot come from a template"]


# Variables


def test_a_variable_comes_from_the_given_variables() -> None:
    workflow = load_text(ONE_STEP.format(cmd="${WHO}"), variables={"WHO": "world"})
    assert workflow.step("a").command == "echo world"


def test_a_variable_comes_from_the_given_environment() -> None:
    workflow = load_text(ONE_STEP.format(cmd="${WHO}"), environ={"WHO": "env"})
    assert workflow.step("a").command == "echo env"


def test_given_variables_win_over_the_environment() -> None:
    workflow = load_text(
        ONE_STEP.format(cmd="${WHO}"), variables={"WHO": "var"}, environ={"WHO": "env"}
    )
    assert workflow.step("a").command == "echo var"


def test_the_host_environment_does_not_leak_in_when_an_environ_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WHO", "host")
    assert problems_of(ONE_STEP.format(cmd="${WHO}")) == [
        "wf.yml:6:14 steps[0].command: ${WHO} is not set: pass --var WHO=... or export it"
    ]


ENV_DEFAULT = """\
version: 1
workflow: w
env:
  GREETING: ${GREETING:-hello}
  TARGET: world
steps:
  - id: a
    type: cmd
    command: echo ${GREETING} ${TARGET}
"""


def test_the_env_block_declares_a_default_the_steps_use() -> None:
    workflow = load_text(ENV_DEFAULT)
    assert workflow.step("a").command == "echo hello world"
    assert workflow.env.variables() == {"GREETING": "hello", "TARGET": "world"}


def test_an_env_block_default_gives_way_to_the_environment_and_to_variables() -> None:
    from_env = load_text(ENV_DEFAULT, environ={"GREETING": "hi"})
    from_var = load_text(ENV_DEFAULT, variables={"GREETING": "yo"}, environ={"GREETING": "hi"})
    assert from_env.step("a").command == "echo hi world"
    assert from_var.step("a").command == "echo yo world"
    assert from_var.env.variables()["GREETING"] == "yo"


def test_a_value_written_in_the_env_block_wins_over_the_environment() -> None:
    workflow = load_text(ENV_DEFAULT, environ={"TARGET": "mars"})
    assert workflow.step("a").command == "echo hello world"


def test_run_id_is_the_run_id_when_running_and_a_placeholder_when_validating() -> None:
    text = ONE_STEP.format(cmd="${RUN_ID}")
    assert load_text(text, run_id=RUN_ID).step("a").command == f"echo {RUN_ID}"
    assert load_text(text).step("a").command == "echo RUN_ID"


def test_an_unset_variable_is_reported_at_its_value() -> None:
    assert problems_of(
        """\
version: 1
workflow: w
model: ${BEDROCK_MODEL_ID}
steps:
  - id: a
    type: cmd
    command: echo ${MISSING} ${ALSO_MISSING:-fine}
"""
    ) == [
        "wf.yml:3:8 model: ${BEDROCK_MODEL_ID} is not set: "
        "pass --var BEDROCK_MODEL_ID=... or export it",
        "wf.yml:7:14 steps[0].command: ${MISSING} is not set: pass --var MISSING=... or export it",
    ]


def test_an_env_key_whose_value_is_a_list_is_reported() -> None:
    [problem] = problems_of(
        """\
version: 1
workflow: w
env:
  NAME: x
  PATHS: [a, b]
steps:
  - id: a
    type: apply_diff
"""
    )
    assert problem.startswith("wf.yml:")
    assert problem.endswith("env.PATHS must be a string, number or boolean")


def test_a_boolean_env_key_substitutes_the_same_text_the_step_gets_in_its_environment() -> None:
    workflow = load_text(
        "version: 1\nworkflow: w\nenv:\n  DEBUG: true\n"
        "steps:\n  - id: a\n    type: cmd\n    command: echo ${DEBUG}\n"
    )
    assert workflow.env.variables() == {"DEBUG": "true"}
    assert workflow.step("a").command == "echo true"
