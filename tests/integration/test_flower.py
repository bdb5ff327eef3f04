"""Flower started by `bcce flower` sees bcce's workers, tasks and queues as the run made them."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import (
    EXAMPLES,
    ROOT,
    RedisServer,
    Workers,
    _free_port,
    base_env,
    bcce,
    wait_for,
)

pytestmark = pytest.mark.integration
AUTH = "Basic " + base64.b64encode(b"ops:s3cret").decode()


def get(port: int, path: str, auth: bool = True) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        request.add_header("Authorization", AUTH)
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read().decode()
    return json.loads(body) if path.startswith("/api/") else body


def test_flower_shows_bcce_workers_tasks_per_pool_and_queue_lengths(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url(11)
    redis.Redis.from_url(url).flushdb()
    env = base_env(BCCE_BROKER_URL=url)
    port = _free_port()
    pool = Workers(url, tmp_path)
    flower = subprocess.Popen(
        [sys.executable, "-m", "bcce", "flower", "--port", str(port), "--basic-auth", "ops:s3cret"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _answers(port), timeout=30, what="Flower")
        pool.start(["policy"], env=env)
        pool.start(["command"], env=env)
        result = bcce(
            "workflow",
            "run",
            str(EXAMPLES / "hello.yml"),
            "--workspace",
            str(tmp_path),
            env=env,
            cwd=tmp_path,
        )
        assert result.code == 0, result.err

        def all_tasks_seen() -> dict[str, Any] | None:
            tasks = get(port, "/api/tasks")
            done = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
            return tasks if len(done) == 8 else None

        tasks = wait_for(all_tasks_seen, timeout=30, what="Flower to see 8 finished tasks")
        workers = get(port, "/api/workers?refresh=1")
        queues = get(port, "/api/queues/length")
        metrics = get(port, "/metrics")
        with pytest.raises(urllib.error.HTTPError) as denied:
            get(port, "/api/workers", auth=False)
    finally:
        pool.stop()
        flower.terminate()
        flower.wait(15)

    assert denied.value.code == 401
    by_name = Counter(t["name"] for t in tasks.values())
    assert by_name == {"bcce.policy.check": 4, "bcce.step.cmd": 4}
    where = {(t["name"], t["worker"].split("@")[0].split("-")[0]) for t in tasks.values()}
    assert where == {("bcce.policy.check", "policy"), ("bcce.step.cmd", "command")}
    run_id = result.out.split()[1]
    assert all(run_id in t["args"] for t in tasks.values())  # argsrepr names run and step
    consumed = {
        name.split("@")[0].split("-")[0]: {q["name"] for q in info.get("active_queues", [])}
        for name, info in workers.items()
    }
    assert consumed == {"policy": {"policy"}, "command": {"command"}}
    lengths = {q["name"]: q["messages"] for q in queues["active_queues"]}
    assert lengths == {"policy": 0, "command": 0}
    assert 'flower_events_total{task="bcce.step.cmd"' in metrics


def _answers(port: int) -> bool:
    try:
        get(port, "/healthcheck", auth=False)
    except (urllib.error.URLError, ConnectionError):
        return False
    return True
