"""Tests for bcce.policy: the command allowlist, effective policies and the gate's decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bcce import policy
from bcce.errors import WorkflowError
from bcce.loader import from_snapshot
from bcce.policy import Decision, Limits, command_denial
from bcce.steptypes import registry
from bcce.workflow import Workflow

LIMITS = Limits(default_timeout_seconds=1800, max_timeout_seconds=3600)


def workflow_of(*steps: dict[str, Any], env: dict[str, Any] | None = None) -> Workflow:
    data: dict[str, Any] = {"version": 1, "workflow": "w", "steps": list(steps)}
    if env is not None:
        data["env"] = env
    return from_snapshot(data, registry())


def cmd(command: str | list[str], **keys: Any) -> dict[str, Any]:
    return {"id": "a", "type": "cmd", "command": command, **keys}


def decide(workflow: Workflow, *, run_active: bool = True, elapsed: float = 0.0) -> Decision:
    return policy.decide(
        workflow, workflow.steps[0], LIMITS, run_active=run_active, elapsed_seconds=elapsed
    )


# command_denial


def allowed(argv: Sequence[str], allowlist: Sequence[str] | None) -> bool:
    return command_denial(argv, allowlist) is None


def test_without_an_allowlist_any_command_may_run() -> None:
    assert allowed(["rm", "-rf", "/tmp/x"], None)


def test_an_empty_allowlist_denies_every_command_and_says_so() -> None:
    assert command_denial(["echo", "hi"], []) == (
        "'echo' is not allowed: policy.cmd_allowlist is empty (no commands)"
    )


def test_an_entry_naming_a_program_allows_every_subcommand_of_it() -> None:
    assert allowed(["git", "push", "origin"], ["git"])
    assert allowed(["git"], ["git"])


def test_an_entry_with_a_subcommand_allows_only_that_subcommand() -> None:
    assert allowed(["git", "status", "-s"], ["git status"])
    assert command_denial(["git", "push"], ["git status"]) == (
        "'git push' is not in policy.cmd_allowlist ['git status']"
    )
    assert not allowed(["git"], ["git status"])


def test_a_workspace_script_with_the_same_name_is_not_the_allowed_program() -> None:
    assert not allowed(["./git", "status"], ["git"])
    assert not allowed(["/usr/bin/git", "status"], ["git"])


def test_an_entry_with_a_path_allows_only_that_exact_path() -> None:
    assert allowed(["/usr/bin/git", "log"], ["/usr/bin/git"])
    assert not allowed(["git", "log"], ["/usr/bin/git"])
    assert not allowed(["/usr/local/bin/git", "log"], ["/usr/bin/git"])


def test_a_prefix_of_a_program_name_is_not_that_program() -> None:
    assert not allowed(["gitk"], ["git"])
    assert not allowed(["git"], ["gitk"])


def test_any_matching_entry_is_enough() -> None:
    assert allowed(["npm", "test"], ["git", "npm test", "make"])


# effective


def test_a_step_without_a_policy_gets_the_default_timeout_and_no_restrictions() -> None:
    step = workflow_of(cmd("echo hi")).steps[0]
    assert policy.effective(step, LIMITS).to_json() == {
        "timeout_seconds": 1800,
        "cmd_allowlist": None,
        "allowed_paths": None,
        "max_files": None,
        "max_edits": None,
        "max_cost_usd": None,
        "org_cmd_allowlist": None,
        "cmd_denylist": (),
        "denied_paths": (),
        "run_max_cost_usd": None,
        "approval_required": False,
        "env_pass": (),
        "approvers": None,
        "self_approval": True,
    }


def test_the_step_policy_is_carried_into_the_effective_policy() -> None:
    step = workflow_of(
        {
            "id": "a",
            "type": "agent",
            "policy": {
                "timeout_seconds": 60,
                "max_files": 5,
                "max_edits": 0,
                "allowed_paths": ["src/**", "!src/secret/**"],
                "cmd_allowlist": [],
            },
        }
    ).steps[0]
    assert policy.effective(step, LIMITS) == policy.Effective(
        timeout_seconds=60,
        cmd_allowlist=(),
        allowed_paths=("src/**", "!src/secret/**"),
        max_files=5,
        max_edits=0,
    )


# decide


def test_a_step_within_policy_is_allowed_with_its_own_timeout() -> None:
    workflow = workflow_of(
        cmd("echo hi", policy={"timeout_seconds": 10, "cmd_allowlist": ["echo"]})
    )
    assert replace(decide(workflow), effective=None) == Decision(
        True, "allow", "within policy", 10.0
    )


def test_a_step_of_a_run_that_is_no_longer_active_is_denied() -> None:
    decision = decide(workflow_of(cmd("echo hi")), run_active=False)
    assert (decision.allowed, decision.rule) == (False, "run_active")
    assert decision.reason == "the run is no longer active (cancelled, denied or finished)"


def test_a_timeout_above_the_deployment_maximum_is_denied() -> None:
    decision = decide(workflow_of(cmd("echo hi", policy={"timeout_seconds": 3601})))
    assert (decision.allowed, decision.rule) == (False, "timeout")
    assert decision.reason == (
        "policy.timeout_seconds 3601 is above the maximum 3600 (BCCE_MAX_STEP_TIMEOUT_SECONDS)"
    )


def test_a_timeout_equal_to_the_maximum_is_allowed() -> None:
    assert decide(workflow_of(cmd("echo hi", policy={"timeout_seconds": 3600}))).allowed


def test_a_command_outside_the_allowlist_is_denied_by_the_cmd_allowlist_rule() -> None:
    decision = decide(workflow_of(cmd("rm -rf build", policy={"cmd_allowlist": ["make"]})))
    assert decision == Decision(
        False, "cmd_allowlist", "'rm -rf' is not in policy.cmd_allowlist ['make']", 1800.0
    )


def test_a_shell_step_is_checked_as_sh_not_as_the_program_inside_it() -> None:
    as_echo = workflow_of(cmd("echo hi", shell=True, policy={"cmd_allowlist": ["echo"]}))
    as_sh = workflow_of(cmd("echo hi", shell=True, policy={"cmd_allowlist": ["sh"]}))
    denied = decide(as_echo)
    assert (denied.allowed, denied.rule) == (False, "cmd_allowlist")
    assert denied.reason == "'sh -c' is not in policy.cmd_allowlist ['echo']"
    assert decide(as_sh).allowed


def test_a_run_that_used_up_its_max_runtime_is_denied_by_the_deadline_rule() -> None:
    workflow = workflow_of(cmd("echo hi"), env={"max_runtime_seconds": 120})
    decision = decide(workflow, elapsed=120.0)
    assert decision == Decision(
        False, "deadline", "env.max_runtime_seconds (120s) is used up", 1800.0
    )


def test_a_step_longer_than_the_runtime_left_is_allowed_with_the_shorter_timeout() -> None:
    workflow = workflow_of(
        cmd("echo hi", policy={"timeout_seconds": 60}), env={"max_runtime_seconds": 100}
    )
    decision = decide(workflow, elapsed=70.0)
    assert replace(decision, effective=None) == Decision(
        True, "allow", "within policy", 30.0, deadline_bound=True
    )
    assert decision.effective is not None and decision.effective["timeout_seconds"] == 60


def test_a_step_that_fits_in_the_runtime_left_keeps_its_own_timeout() -> None:
    workflow = workflow_of(
        cmd("echo hi", policy={"timeout_seconds": 20}), env={"max_runtime_seconds": 100}
    )
    decision = decide(workflow, elapsed=70.0)
    assert (decision.timeout_seconds, decision.deadline_bound) == (20.0, False)


def test_a_decision_survives_its_json_round_trip() -> None:
    decision = Decision(True, "allow", "within policy", 30.5, deadline_bound=True)
    assert Decision.from_json(decision.to_json()) == decision


def test_an_allowlist_entry_with_an_unbalanced_quote_never_crashes_the_gate() -> None:
    data = cmd("echo hi", policy={"cmd_allowlist": ['echo "hi']})
    try:
        workflow = workflow_of(data)
    except WorkflowError:
        return  # refusing the workflow when it is loaded is a fix too
    assert not decide(workflow).allowed
