"""Step messages that did not pass the gate, published straight to Redis, run nothing."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from bcce.celery_app import make_app
from bcce.records import RunRecord, RunStatus, StepRecord, new_run_id
from bcce.settings import Settings
from bcce.state import RunStore, run_key
from bcce.steptypes import registry
from tests.conftest import Workers, base_env, bcce, wait_for

pytestmark = pytest.mark.integration

SNAPSHOT = {
    "version": 1,
    "workflow": "bypass",
    "steps": [
        {"id": "harmless", "type": "cmd", "command": "true"},
        {"id": "payload", "type": "cmd", "command": "touch pwned"},
    ],
}


def _run(store: RunStore, workspace: Path) -> str:
    run_id = new_run_id()
    store.create(
        RunRecord(
            id=run_id,
            workflow="bypass",
            status=RunStatus.QUEUED,
            created_at=time.time(),
            workspace=str(workspace),
            run_dir=str(workspace / "run"),
            step_ids=["harmless", "payload"],
        ),
        SNAPSHOT,
        [StepRecord(id=s["id"], type="cmd", queue="command") for s in SNAPSHOT["steps"]],
    )
    return run_id


def test_a_step_message_without_a_grant_is_refused_and_runs_nothing(
    workers: Workers, tmp_path: Path
) -> None:
    store = RunStore.from_url(workers.broker_url, 3600)
    run_id = _run(store, tmp_path)
    app = make_app(Settings(broker_url=workers.broker_url), registry())
    app.send_task("bcce.step.cmd", args=(run_id, "payload"), queue="command")
    wait_for(lambda: store.run(run_id).status.terminal, what="the refusal")
    assert store.run(run_id).status == RunStatus.DENIED
    step = store.step(run_id, "payload")
    assert step.status.value == "denied"
    assert step.error == "refused: no grant from bcce.policy.check for this step"
    assert not (tmp_path / "pwned").exists()


def test_a_grant_copied_from_another_step_is_refused(workers: Workers, tmp_path: Path) -> None:
    store = RunStore.from_url(workers.broker_url, 3600)
    run_id = _run(store, tmp_path)
    app = make_app(Settings(broker_url=workers.broker_url), registry())
    app.send_task("bcce.policy.check", args=(run_id, "harmless"), queue="policy")
    wait_for(lambda: store.step(run_id, "harmless").grant is not None, what="a real grant")
    stolen = store.step(run_id, "harmless").grant
    forged = store.step(run_id, "payload").model_copy(
        update={"grant": stolen, "decision": {"allowed": True}}
    )
    store.put_step(run_id, forged)
    app.send_task("bcce.step.cmd", args=(run_id, "payload"), queue="command")
    wait_for(lambda: store.run(run_id).status.terminal, what="the refusal")
    assert store.step(run_id, "payload").error == (
        f"refused: grant is for {run_id}/harmless, not {run_id}/payload"
    )
    assert not (tmp_path / "pwned").exists()


def test_a_workflow_edited_in_redis_after_the_gate_is_refused(
    workers: Workers, tmp_path: Path
) -> None:
    wf = tmp_path / "wf.yml"
    wf.write_text(
        textwrap.dedent("""
        version: 1
        workflow: edited
        steps:
          - id: wait
            type: cmd
            command: sleep 2
          - id: payload
            type: cmd
            command: echo safe
    """),
        encoding="utf-8",
    )
    env = base_env(BCCE_BROKER_URL=workers.broker_url)
    started = bcce("workflow", "run", str(wf), "--workspace", str(tmp_path), "--no-wait", env=env)
    run_id = started.out.strip()
    store = RunStore.from_url(workers.broker_url, 3600)
    # The attacker rewrites the snapshot while step one runs, before step two's gate... and
    # after it: either the gate judges the new spec, or the grant no longer matches it.
    wait_for(lambda: store.step(run_id, "wait").status.value == "running", what="step one")
    store.client.hset(
        run_key(run_id),
        "snapshot",
        json.dumps(
            {
                **store.snapshot(run_id),
                "steps": [
                    {"id": "wait", "type": "cmd", "command": "sleep 2"},
                    {
                        "id": "payload",
                        "type": "cmd",
                        "command": "touch pwned",
                        "policy": {"cmd_allowlist": ["echo"]},
                    },
                ],
            }
        ),
    )
    wait_for(lambda: store.run(run_id).status.terminal, timeout=30, what="the run to end")
    assert not (tmp_path / "pwned").exists()
