"""Two worker processes per pool share 100 concurrent workflows: every run completes, each
step runs once, and both processes of each pool do work."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from bcce import policy
from bcce.celery_app import make_app
from bcce.compiler import compile_plan
from bcce.loader import load_workflow
from bcce.records import RunStatus, new_run_id
from bcce.runs import run_dir_for, submit
from bcce.settings import Settings
from bcce.state import RunStore
from bcce.steptypes import registry
from tests.conftest import RedisServer, Workers, base_env, wait_for

pytestmark = pytest.mark.integration
RUNS = 100


def test_two_workers_per_pool_share_100_workflows_and_nothing_is_lost_or_run_twice(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url(13)
    redis.Redis.from_url(url).flushdb()
    env = base_env(BCCE_BROKER_URL=url)
    pool = Workers(url, tmp_path)
    wf = tmp_path / "wf.yml"
    wf.write_text(
        "version: 1\nworkflow: scale\nsteps:\n"
        "  - id: one\n    type: cmd\n    command: echo ${RUN_ID}\n"
        "  - id: two\n    type: cmd\n    shell: true\n    command: echo x >> ran-${RUN_ID}\n",
        encoding="utf-8",
    )
    settings = Settings(broker_url=url)
    types = registry()
    app = make_app(settings, types)
    store = RunStore.from_url(url, 3600)
    try:
        for _ in range(2):
            pool.start(["policy"], env=env, concurrency=1)
            pool.start(["command"], env=env, concurrency=1)
        run_ids = []
        for _ in range(RUNS):
            run_id = new_run_id()
            workflow = load_workflow(wf, types, run_id=run_id)
            plan = compile_plan(workflow, types, policy.Limits.of(settings), run_id)
            submit(
                app,
                store,
                workflow,
                plan,
                tmp_path,
                run_dir_for(workflow, settings, tmp_path, run_id),
            )
            run_ids.append(run_id)

        def all_ended() -> bool:
            statuses = store.statuses(run_ids)
            return all(s is not None and s.terminal for s in statuses.values())

        started = time.monotonic()
        wait_for(all_ended, timeout=180, interval=0.2, what=f"{RUNS} runs to end")
        elapsed = time.monotonic() - started
    finally:
        pool.stop()

    statuses = Counter(store.statuses(run_ids).values())
    assert statuses == {RunStatus.SUCCEEDED: RUNS}
    workers: Counter[str] = Counter()
    for run_id in run_ids:
        steps = store.steps(run_id)
        assert [s.attempts for s in steps] == [1, 1]
        workers.update(s.worker or "" for s in steps)
        assert (tmp_path / f"ran-{run_id}").read_text() == "x\n"  # the side effect, once
    command_workers = {w for w in workers if w.startswith("command-")}
    assert len(command_workers) == 2, workers
    assert min(workers[w] for w in command_workers) >= RUNS * 2 // 10, workers
    print(f"{RUNS} runs in {elapsed:.1f}s across {dict(workers)}")
