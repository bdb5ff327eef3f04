"""Tests for bcce.compiler and bcce.celery_app: the plan as plain data, and the Celery app."""

from __future__ import annotations

from typing import Any

import pytest
from celery.exceptions import QueueNotFound

from bcce import policy
from bcce.celery_app import BcceCelery, config, make_app
from bcce.compiler import Plan, compile_plan, signatures, to_chain
from bcce.errors import UsageError
from bcce.loader import from_snapshot
from bcce.settings import Settings
from bcce.steptypes import StepType, registry
from bcce.workflow import Step, Workflow

RUN_ID = "2026-11-26T14-03-07-a1b2c3"
LIMITS = policy.Limits(default_timeout_seconds=1800, max_timeout_seconds=3600)
UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens: a test that connects fails


def workflow_of(*steps: dict[str, Any]) -> Workflow:
    return from_snapshot({"version": 1, "workflow": "w", "steps": list(steps)}, registry())


def plan_of(*steps: dict[str, Any], start_at: str | None = None) -> Plan:
    return compile_plan(workflow_of(*steps), registry(), LIMITS, RUN_ID, start_at=start_at)


CMD_A = {"id": "a", "type": "cmd", "command": "echo a"}
CMD_B = {"id": "b", "type": "cmd", "command": "echo b", "policy": {"timeout_seconds": 5}}
MIXED = (
    {"id": "ask", "type": "prompt", "prompt": "hi"},
    {"id": "fix", "type": "agent", "policy": {"max_edits": 3}},
    {"id": "test", "type": "cmd", "command": "make test"},
    {"id": "ship", "type": "apply_diff"},
)


@pytest.fixture(scope="module")
def app() -> BcceCelery:
    return make_app(Settings(broker_url=UNREACHABLE), registry())


# The plan


def test_each_step_is_a_policy_check_then_its_step_task_with_run_and_step_ids() -> None:
    assert plan_of(CMD_A, CMD_B).messages() == [
        {"task": "bcce.policy.check", "args": [RUN_ID, "a"], "queue": "policy"},
        {"task": "bcce.step.cmd", "args": [RUN_ID, "a"], "queue": "command"},
        {"task": "bcce.policy.check", "args": [RUN_ID, "b"], "queue": "policy"},
        {"task": "bcce.step.cmd", "args": [RUN_ID, "b"], "queue": "command"},
    ]


def test_each_step_type_goes_to_its_pool_queue() -> None:
    assert plan_of(*MIXED).messages()[1::2] == [
        {"task": "bcce.step.prompt", "args": [RUN_ID, "ask"], "queue": "agent"},
        {"task": "bcce.step.agent", "args": [RUN_ID, "fix"], "queue": "agent"},
        {"task": "bcce.step.cmd", "args": [RUN_ID, "test"], "queue": "command"},
        {"task": "bcce.step.apply_diff", "args": [RUN_ID, "ship"], "queue": "diff"},
    ]


def test_the_queues_a_run_needs_are_policy_first_then_each_pool_once() -> None:
    assert plan_of(CMD_A, CMD_B).queues == ["policy", "command"]
    assert plan_of(*MIXED).queues == ["policy", "agent", "command", "diff"]


def test_start_at_plans_that_step_and_those_after_it() -> None:
    plan = plan_of(*MIXED, start_at="test")
    assert [s.id for s in plan.steps] == ["test", "ship"]
    assert plan.messages()[0] == {
        "task": "bcce.policy.check",
        "args": [RUN_ID, "test"],
        "queue": "policy",
    }
    assert plan.queues == ["policy", "command", "diff"]


def test_start_at_an_unknown_step_is_a_usage_error_listing_the_steps() -> None:
    with pytest.raises(UsageError) as caught:
        plan_of(CMD_A, CMD_B, start_at="c")
    assert str(caught.value) == "workflow has no step 'c'; steps: a, b"


def test_each_planned_step_carries_its_effective_policy() -> None:
    plan = plan_of(CMD_A, CMD_B)
    assert [s.effective.timeout_seconds for s in plan.steps] == [1800, 5]


# A plugin type that can only validate (no executor yet), next to the built-ins.
DRAFT = StepType("draft", "command", Step, None, "validates, cannot run")


def plan_with_draft() -> Plan:
    types = {**registry(), "draft": DRAFT}
    snapshot = {"version": 1, "workflow": "w", "steps": [*MIXED, {"id": "later", "type": "draft"}]}
    return compile_plan(from_snapshot(snapshot, types), types, LIMITS, RUN_ID)


def test_every_built_in_step_type_runs_and_a_type_without_executor_does_not() -> None:
    assert [(s.id, s.runnable) for s in plan_with_draft().steps] == [
        ("ask", True),
        ("fix", True),
        ("test", True),
        ("ship", True),
        ("later", False),
    ]


def test_the_dry_run_json_holds_the_queues_steps_and_chain() -> None:
    plan = plan_of(CMD_B)
    assert plan.to_json() == {
        "run_id": RUN_ID,
        "workflow": "w",
        "queues": ["policy", "command"],
        "steps": [
            {
                "id": "b",
                "type": "cmd",
                "queue": "command",
                "task": "bcce.step.cmd",
                "runnable": True,
                "policy": {
                    "timeout_seconds": 5,
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
                },
            }
        ],
        "chain": plan.messages(),
    }


def test_compiling_twice_gives_the_same_plan() -> None:
    assert plan_of(*MIXED) == plan_of(*MIXED)


# Signatures and the chain


def test_signatures_are_immutable_and_carry_their_queue(app: BcceCelery) -> None:
    sigs = signatures(plan_of(CMD_A), app)
    assert [(s.task, tuple(s.args), s.options, s.immutable) for s in sigs] == [
        ("bcce.policy.check", (RUN_ID, "a"), {"queue": "policy"}, True),
        ("bcce.step.cmd", (RUN_ID, "a"), {"queue": "command"}, True),
    ]
    assert all(s.app is app for s in sigs)


def test_the_chain_is_bound_to_the_given_app_and_holds_every_signature(app: BcceCelery) -> None:
    chain = to_chain(plan_of(CMD_A, CMD_B), app)
    assert chain.app is app
    assert [(t.task, tuple(t.args)) for t in chain.tasks] == [
        ("bcce.policy.check", (RUN_ID, "a")),
        ("bcce.step.cmd", (RUN_ID, "a")),
        ("bcce.policy.check", (RUN_ID, "b")),
        ("bcce.step.cmd", (RUN_ID, "b")),
    ]


def test_a_chain_with_step_types_that_cannot_run_yet_is_refused(app: BcceCelery) -> None:
    with pytest.raises(UsageError) as caught:
        to_chain(plan_with_draft(), app)
    assert str(caught.value) == (
        "step(s) later use a step type this version of bcce can validate but not "
        "run yet: see `bcce plugin list`"
    )


# The Celery configuration


def test_only_json_is_ever_serialised_or_accepted() -> None:
    conf = config(Settings(broker_url=UNREACHABLE), registry())
    assert conf["accept_content"] == ["json"]
    assert conf["result_accept_content"] == ["json"]
    assert (conf["task_serializer"], conf["result_serializer"], conf["event_serializer"]) == (
        "json",
        "json",
        "json",
    )


def test_step_messages_are_acked_late_and_handed_back_when_a_worker_is_lost() -> None:
    conf = config(Settings(broker_url=UNREACHABLE), registry())
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1


def test_queues_are_declared_and_missing_ones_are_never_created() -> None:
    conf = config(Settings(broker_url=UNREACHABLE), registry())
    assert [q.name for q in conf["task_queues"]] == ["policy", "agent", "command", "diff"]
    assert conf["task_create_missing_queues"] is False
    assert conf["task_default_queue"] == "policy"


def test_tasks_are_routed_by_name_to_their_pool_queue() -> None:
    conf = config(Settings(broker_url=UNREACHABLE), registry())
    assert conf["task_routes"] == {
        "bcce.policy.check": {"queue": "policy"},
        "bcce.step.cmd": {"queue": "command"},
        "bcce.step.prompt": {"queue": "agent"},
        "bcce.step.agent": {"queue": "agent"},
        "bcce.step.apply_diff": {"queue": "diff"},
    }


def test_task_events_are_on_for_flower_in_distributed_mode() -> None:
    conf = config(Settings(broker_url=UNREACHABLE), registry())
    assert conf["worker_send_task_events"] is True
    assert conf["task_send_sent_event"] is True


@pytest.mark.parametrize("max_step", [60, 6 * 3600])
def test_the_visibility_timeout_is_above_the_longest_allowed_step(max_step: int) -> None:
    conf = config(Settings(broker_url=UNREACHABLE, max_step_timeout_seconds=max_step), registry())
    broker = conf["broker_transport_options"]["visibility_timeout"]
    assert broker > max_step
    assert conf["result_backend_transport_options"]["visibility_timeout"] == broker


def test_the_app_carries_the_configuration(app: BcceCelery) -> None:
    assert app.conf.task_create_missing_queues is False
    assert app.conf.task_acks_late is True
    assert app.conf.broker_url == UNREACHABLE


def test_routing_a_step_task_by_name_finds_its_pool_queue(app: BcceCelery) -> None:
    assert app.amqp.router.route({}, "bcce.step.cmd")["queue"].name == "command"


def test_publishing_to_an_unknown_queue_fails_before_reaching_the_broker(app: BcceCelery) -> None:
    with pytest.raises(QueueNotFound):
        app.amqp.router.route({"queue": "nope"}, "bcce.step.cmd")
    with pytest.raises(QueueNotFound):
        app.send_task("bcce.step.cmd", args=(RUN_ID, "a"), queue="comand")
