"""A worker process killed in the middle of a step: the step is delivered again and the run
completes, with the lost attempt on record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
import redis

from tests.conftest import RedisServer, Workers, base_env, bcce, start_run, wait_for

pytestmark = pytest.mark.integration


def test_a_step_whose_worker_process_is_killed_runs_again_and_the_run_completes(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url(8)
    redis.Redis.from_url(url).flushdb()
    env = base_env(BCCE_BROKER_URL=url)
    pool = Workers(url, tmp_path)
    wf = tmp_path / "wf.yml"
    # The first attempt records which process runs it and then hangs; the second finishes.
    wf.write_text(
        textwrap.dedent("""
        version: 1
        workflow: survives
        steps:
          - id: fragile
            type: cmd
            shell: true
            command: >
              echo attempt >> attempts;
              if [ -f first-done ]; then exit 0; fi;
              touch first-done; echo $PPID > worker.pid; exec sleep 31.5
          - id: after
            type: cmd
            command: echo after
    """),
        encoding="utf-8",
    )
    try:
        pool.start(["policy"], env=env)
        pool.start(["command"], env=env, concurrency=2)
        waiting = start_run(wf, tmp_path, env)
        wait_for(lambda: (tmp_path / "worker.pid").exists(), what="the first attempt")
        os.kill(int((tmp_path / "worker.pid").read_text()), signal.SIGKILL)
        out, _ = waiting.communicate(timeout=120)
    finally:
        pool.stop()
        subprocess.run(["pkill", "-f", "sleep 31.5"], check=False)
    assert waiting.returncode == 0, out
    summary = json.loads(out.splitlines()[-1])
    steps = {s["id"]: s for s in summary["steps"]}
    assert steps["fragile"]["status"] == "succeeded"
    assert steps["fragile"]["attempts"] == 2  # the lost attempt is on record
    assert (tmp_path / "attempts").read_text().count("attempt") == 2
    assert steps["after"]["status"] == "succeeded"
    assert bcce("workflow", "status", summary["run_id"], env=env).code == 0


def test_bcce_worker_restarts_its_worker_process_when_it_dies(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url(12)
    redis.Redis.from_url(url).flushdb()
    env = base_env(BCCE_BROKER_URL=url)
    pool = Workers(url, tmp_path)
    try:
        pool.start(["policy"], env=env)
        supervisor = pool.start(["command"], env=env, concurrency=1)
        child = int(
            subprocess.run(
                ["pgrep", "-P", str(supervisor.pid)], capture_output=True, text=True, check=True
            ).stdout.split()[0]
        )
        os.kill(child, signal.SIGKILL)
        wait_for(
            lambda: _children(supervisor.pid) not in ([], [child]),
            timeout=30,
            what="a new worker process",
        )
        pool.wait_consuming(["command"])
        wf = tmp_path / "wf.yml"
        wf.write_text(
            "version: 1\nworkflow: again\nsteps:\n  - id: one\n    type: cmd\n"
            "    command: echo back\n",
            encoding="utf-8",
        )
        result = bcce("workflow", "run", str(wf), "--workspace", str(tmp_path), env=env)
        assert result.code == 0, result.out + result.err
        assert supervisor.poll() is None
    finally:
        pool.stop()


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]
