"""Prometheus metrics scraped from real prefork workers after a real run."""

from __future__ import annotations

import urllib.request

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import EXAMPLES, RedisServer, Workers, _free_port, base_env, bcce

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_workers_export_what_the_run_did_across_prefork_children(
    redis_server: RedisServer, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    url = redis_server.url(10)
    redis.Redis.from_url(url).flushdb()
    gate_port, step_port = _free_port(), _free_port()
    pool = Workers(url, tmp_path)
    try:
        pool.start(["policy"], env=base_env(BCCE_BROKER_URL=url, BCCE_METRICS_PORT=str(gate_port)))
        pool.start(
            ["command"],
            concurrency=2,
            env=base_env(BCCE_BROKER_URL=url, BCCE_METRICS_PORT=str(step_port)),
        )
        for _ in range(2):
            result = bcce(
                "workflow",
                "run",
                str(EXAMPLES / "hello.yml"),
                "--workspace",
                str(tmp_path),
                env=base_env(BCCE_BROKER_URL=url),
                cwd=tmp_path,
            )
            assert result.code == 0, result.err
        gate, steps = scrape(gate_port), scrape(step_port)
    finally:
        pool.stop()

    assert value(gate, "bcce_policy_decisions_total", rule="allow", outcome="allow") == 8
    assert value(steps, "bcce_steps_total", type="cmd", pool="command", outcome="succeeded") == 6
    assert value(steps, "bcce_steps_total", type="cmd", pool="command", outcome="failed") == 2
    assert value(steps, "bcce_runs_total", outcome="succeeded") == 2
    assert value(steps, "bcce_step_duration_seconds_count", type="cmd", pool="command") == 8
    assert value(steps, "bcce_queue_wait_seconds_count", pool="command") == 8
    assert value(steps, "bcce_queue_messages", pool="command") == 0
    assert value(steps, "bcce_worker_tasks", pool="command", state="active") == 0
    assert value(gate, "bcce_queue_messages", pool="policy") == 0
