"""SIGTERM, as Kubernetes sends it, to a worker in the middle of a step: the step finishes,
the worker then exits, and the run goes on on another worker; nothing runs twice."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisServer, Workers, base_env, start_run, wait_for

pytestmark = pytest.mark.integration


def test_a_worker_told_to_stop_finishes_its_step_first(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url(1)
    redis.Redis.from_url(url).flushdb()
    env = base_env(BCCE_BROKER_URL=url)
    (tmp_path / "wf.yml").write_text(
        textwrap.dedent(
            """\
            version: 1
            workflow: warm
            steps:
              - id: slow
                type: cmd
                command: python3 -c "import time; open('started', 'w'); time.sleep(3);
                  open('log', 'a').write('slow\\\\n')"
              - id: after
                type: cmd
                command: python3 -c "open('log', 'a').write('after\\\\n')"
            """
        )
    )
    pool = Workers(url, tmp_path)
    try:
        pool.start(["policy"], env=env, concurrency=1)
        first = pool.start(["command"], env=env, concurrency=1)
        waiting = start_run(tmp_path / "wf.yml", tmp_path, env)
        wait_for(lambda: (tmp_path / "started").exists(), what="the slow step")
        first.send_signal(signal.SIGTERM)  # the supervisor passes it on: warm shutdown
        pool.start(["command"], env=env, concurrency=1)
        out, _ = waiting.communicate(timeout=90)
        assert first.wait(30) == 0  # it left on its own once the step was done
    finally:
        pool.stop()
    assert waiting.returncode == 0, out
    summary = json.loads(out.splitlines()[-1])
    assert [(s["id"], s["status"], s["attempts"]) for s in summary["steps"]] == [
        ("slow", "succeeded", 1),
        ("after", "succeeded", 1),
    ]
    assert (tmp_path / "log").read_text() == "slow\nafter\n"
