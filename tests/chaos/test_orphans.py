"""A run whose step message was lost (deleted from Redis, as a broker restart without
persistence would) is found by the reconciler and re-enqueued, or failed on request; never
left waiting forever, and no step runs twice."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import redis

from bcce.state import RunStore, broker_queue_keys
from tests.conftest import RedisServer, Workers, base_env, bcce, wait_for

pytestmark = pytest.mark.integration

WORKFLOW = textwrap.dedent(
    """\
    version: 1
    workflow: lost
    steps:
      - id: first
        type: cmd
        command: python3 -c "open('side-effects', 'a').write('first\\\\n')"
      - id: second
        type: cmd
        command: python3 -c "open('side-effects', 'a').write('second\\\\n')"
    """
)


def submit_and_lose_the_step_message(url: str, tmp_path: Path) -> str:
    """Submit with no command worker, wait for the gate, then drop the step's message."""
    (tmp_path / "wf.yml").write_text(WORKFLOW)
    env = base_env(BCCE_BROKER_URL=url)
    out = bcce(
        "workflow",
        "run",
        str(tmp_path / "wf.yml"),
        "--no-wait",
        "--no-worker-check",
        env=env,
        cwd=tmp_path,
    )
    assert out.code == 0, out.err
    run_id = out.out.strip()
    client = redis.Redis.from_url(url)
    store = RunStore.from_url(url, 3600)
    wait_for(lambda: store.step(run_id, "first").status == "allowed", what="the gate's allow")
    wait_for(lambda: client.llen("command") == 1, what="the step message")
    client.delete(*broker_queue_keys("command"))  # lost
    return run_id


def test_the_periodic_reconciler_re_enqueues_a_lost_step(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url(3)
    redis.Redis.from_url(url).flushdb()
    pool = Workers(url, tmp_path)
    fast = base_env(
        BCCE_BROKER_URL=url, BCCE_RECONCILE_SECONDS="1", BCCE_RECONCILE_AFTER_SECONDS="3"
    )
    try:
        pool.start(["policy"], env=fast, concurrency=1)
        run_id = submit_and_lose_the_step_message(url, tmp_path)
        pool.start(["command"], env=base_env(BCCE_BROKER_URL=url), concurrency=1)
        store = RunStore.from_url(url, 3600)
        wait_for(lambda: store.run(run_id).status == "succeeded", timeout=60, what="the run")
    finally:
        pool.stop()
    assert (tmp_path / "side-effects").read_text() == "first\nsecond\n"  # each exactly once
    events = [e for _, e in store.events(run_id)]
    reconciled = [e for e in events if e["type"] == "run.reconciled"]
    assert len(reconciled) == 1 and reconciled[0]["step"] == "first"
    assert "had no message queued or held by a worker" in reconciled[0]["reason"]


def test_reconcile_lists_then_fails_an_orphan_on_request(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url(2)
    redis.Redis.from_url(url).flushdb()
    pool = Workers(url, tmp_path)
    env = base_env(BCCE_BROKER_URL=url)
    try:
        pool.start(["policy"], env=base_env(BCCE_BROKER_URL=url, BCCE_RECONCILE_SECONDS="0"))
        run_id = submit_and_lose_the_step_message(url, tmp_path)
        young = bcce("workflow", "reconcile", "--action", "none", "--json", env=env)
        assert young.out == ""  # within the bound: not an orphan yet
        listed = bcce(
            "workflow", "reconcile", "--older-than", "0.1", "--action", "none", "--json", env=env
        )
        assert json.loads(listed.out)["run_id"] == run_id
        failed = bcce("workflow", "reconcile", "--older-than", "0.1", "--action", "fail", env=env)
        assert f"run {run_id}: step first failed" in failed.out
    finally:
        pool.stop()
    status = bcce("workflow", "status", run_id, "--json", env=env)
    assert status.code == 1
    assert "failed by the reconciler" in json.loads(status.out)["error"]
