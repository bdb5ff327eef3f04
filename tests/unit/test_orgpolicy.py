"""Tests for the organisation policy: loading it, and how it narrows every step's policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bcce import agentpolicy, orgpolicy, policy
from bcce.loader import from_snapshot
from bcce.orgpolicy import PolicyFileError, Rules
from bcce.steptypes import registry
from bcce.workflow import Workflow

LIMITS = policy.Limits(default_timeout_seconds=1800, max_timeout_seconds=7200)
ORG = """\
version: 1
step_types: [cmd, agent, apply_diff]
models: ["*anthropic.claude-sonnet-4*"]
commands:
  allow: [git, "python3 -m pytest", echo]
  deny: ["git push", rm]
  shell: false
paths:
  deny: [".github/**", "**/*.pem"]
max_timeout_seconds: 600
max_cost_usd: {step: 2, run: 5}
approvals: {apply_diff: always}
env: {pass: [HTTPS_PROXY]}
teams:
  payments:
    max_cost_usd: {step: 10, run: 50}
    approvals: {apply_diff: ci}
"""


@pytest.fixture
def org(tmp_path: Path) -> orgpolicy.OrgPolicy:
    path = tmp_path / "org.yaml"
    path.write_text(ORG)
    return orgpolicy.load(path)


def workflow(*steps: dict[str, Any], **top: Any) -> Workflow:
    return from_snapshot({"version": 1, "workflow": "w", "steps": list(steps), **top}, registry())


def decide(org: Rules, *steps: dict[str, Any], **top: Any) -> policy.Decision:
    wf = workflow(*steps, **top)
    return policy.decide(wf, wf.steps[-1], LIMITS, run_active=True, elapsed_seconds=0, org=org)


def test_a_team_replaces_the_keys_it_sets(org: orgpolicy.OrgPolicy) -> None:
    base, payments = org.for_team(None), org.for_team("payments")
    assert (base.max_cost_usd.step, payments.max_cost_usd.step) == (2, 10)
    assert payments.commands.deny == ("git push", "rm")  # not set by the team: the base's
    assert org.for_team("unknown") == base


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("version: 1\ncomands: {}\n", "invalid at comands: Extra inputs are not permitted"),
        ("version: 2\n", "invalid at version"),
        ("version: 1\nmax_timeout_seconds: -1\n", "invalid at max_timeout_seconds"),
        ("version: 1\ncommands: {deny: ['']}\n", "command '': empty"),
        ("version: 1\nsteps: [\n", "is not valid YAML"),
    ],
)
def test_a_bad_policy_file_is_one_error_naming_the_file(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(text)
    with pytest.raises(PolicyFileError, match=str(path)) as caught:
        orgpolicy.load(path)
    assert says in str(caught.value)
    with pytest.raises(PolicyFileError, match="cannot read the org policy"):
        orgpolicy.current(tmp_path / "missing.yaml")


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text("version: 1\nmax_timeout_seconds: 60\n")
    assert orgpolicy.current(path).max_timeout_seconds == 60  # type: ignore[union-attr]
    path.write_text("version: 1\nmax_timeout_seconds: 120\n")
    assert orgpolicy.current(path).max_timeout_seconds == 120  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("step", "rule", "says"),
    [
        ({"id": "p", "type": "prompt", "prompt": "hi"}, "org_step_type", "'prompt' is not allowed"),
        ({"id": "c", "type": "cmd", "command": "make"}, "org_commands", "not among the commands"),
        ({"id": "c", "type": "cmd", "command": "git push origin"}, "org_commands", "'git push'"),
        ({"id": "c", "type": "cmd", "command": "rm -rf /"}, "org_commands", "'rm -rf'"),
        ({"id": "c", "type": "cmd", "command": "echo $HOME", "shell": True}, "org_shell", "shell"),
        (
            {"id": "c", "type": "cmd", "command": "echo", "policy": {"timeout_seconds": 900}},
            "org_timeout",
            "above the org policy's maximum 600",
        ),
        (
            {"id": "a", "type": "agent", "model": "us.anthropic.claude-opus-4-1", "policy": {}},
            "org_model",
            "'us.anthropic.claude-opus-4-1' is not allowed",
        ),
    ],
)
def test_the_gate_denies_what_the_org_forbids(
    org: orgpolicy.OrgPolicy, step: dict[str, Any], rule: str, says: str
) -> None:
    decision = decide(org.for_team(None), step)
    assert not decision.allowed
    assert decision.rule == rule and says in decision.reason


def test_a_workflow_cannot_widen_what_the_org_allows(org: orgpolicy.OrgPolicy) -> None:
    step = {
        "id": "c",
        "type": "cmd",
        "command": "git push --force",
        "policy": {"cmd_allowlist": ["git push"], "max_cost_usd": 100},
    }
    assert decide(org.for_team(None), step).rule == "org_commands"
    wf = workflow({**step, "command": "git status", "policy": {"cmd_allowlist": ["git"]}})
    eff = policy.effective(wf.steps[0], LIMITS, org.for_team(None))
    assert eff.timeout_seconds == 600  # the org's maximum, as no step timeout was given
    assert eff.max_cost_usd == 2 and eff.run_max_cost_usd == 5
    assert eff.approval_required and eff.env_pass == ("HTTPS_PROXY",)
    allowed = decide(
        org.for_team(None), {**step, "command": "git status", "policy": {"cmd_allowlist": ["git"]}}
    )
    assert allowed.allowed and allowed.effective == eff.to_json()


def test_the_org_run_budget_denies_the_next_step(org: orgpolicy.OrgPolicy) -> None:
    wf = workflow({"id": "c", "type": "cmd", "command": "echo"})
    decision = policy.decide(
        wf,
        wf.steps[0],
        LIMITS,
        run_active=True,
        elapsed_seconds=0,
        spent_usd=5.0,
        org=org.for_team(None),
    )
    assert (decision.rule, decision.reason) == (
        "budget",
        "the run has spent $5.0000 of the org policy's run budget $5",
    )


def test_approvals_for_ci_runs_only(org: orgpolicy.OrgPolicy) -> None:
    wf = workflow({"id": "s", "type": "apply_diff", "approve": True})
    rules = org.for_team("payments")
    assert not policy.effective(wf.steps[0], LIMITS, rules, ci=False).approval_required
    assert policy.effective(wf.steps[0], LIMITS, rules, ci=True).approval_required


def test_protected_paths_hold_for_agents_and_diffs(org: orgpolicy.OrgPolicy) -> None:
    wf = workflow({"id": "a", "type": "agent", "policy": {"allowed_paths": ["**"]}})
    eff = policy.effective(wf.steps[0], LIMITS, org.for_team(None))
    assert policy.change_denial("src/app.py", eff) is None
    assert "org policy protects" in (policy.change_denial(".github/workflows/ci.yml", eff) or "")
    assert "org policy protects" in (policy.change_denial("keys/deploy.pem", eff) or "")


def test_an_agents_bash_is_held_to_the_org_lists(org: orgpolicy.OrgPolicy, tmp_path: Path) -> None:
    wf = workflow(
        {
            "id": "a",
            "type": "agent",
            "available_tools": ["Cmd"],
            "policy": {"cmd_allowlist": ["git"]},
        }
    )
    eff = policy.effective(wf.steps[0], LIMITS, org.for_team(None))
    tools = agentpolicy.tool_set(("Cmd",), eff)

    def bash(command: str) -> str | None:
        return agentpolicy.tool_denial("Bash", {"command": command}, eff, tools, tmp_path)

    assert bash("git status") is None
    assert "denied by the org policy ('git push')" in (bash("git push origin main") or "")
