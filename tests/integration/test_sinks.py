"""Run events delivered to a signed webhook by real workers and the CLI (Redis database 4)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bcce.sinks import verify
from bcce.state import RunStore
from tests.conftest import EXAMPLES, RedisServer, Workers, base_env, bcce, wait_for
from tests.unit.test_sinks import SECRET, Receiver

pytestmark = pytest.mark.integration

DB = 4


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def pool(url: str, tmp_path: Path) -> Iterator[Workers]:
    workers = Workers(url, tmp_path)
    yield workers
    workers.stop()


def sink_env(url: str, hook: str) -> dict[str, str]:
    return base_env(BCCE_BROKER_URL=url, BCCE_EVENT_SINKS=hook, BCCE_WEBHOOK_SECRET=SECRET.decode())


def run_hello(url: str, hook: str, workspace: Path) -> tuple[int, str]:
    result = bcce(
        "workflow",
        "run",
        str(EXAMPLES / "hello.yml"),
        "--workspace",
        str(workspace),
        "--json",
        env=sink_env(url, hook),
        cwd=workspace,
    )
    lines = [json.loads(line) for line in result.out.splitlines() if line.startswith("{")]
    run_id = next(line["run_id"] for line in lines if line.get("type") == "run.submitted")
    assert result.code == 0, result.err
    return result.code, run_id


def test_a_run_on_real_workers_sends_every_event_it_records_to_the_webhook_signed(
    url: str, pool: Workers, tmp_path: Path
) -> None:
    receiver = Receiver()
    try:
        env = sink_env(url, receiver.url)
        pool.start(["policy"], env=env)
        pool.start(["command"], env=env)
        _, run_id = run_hello(url, receiver.url, tmp_path)

        wait_for(
            lambda: "run.finished" in [e["type"] for e in receiver.events()],
            what="run.finished at the webhook",
        )
        stored = [
            e
            for _, e in RunStore(redis.Redis.from_url(url, decode_responses=True), 60).events(
                run_id
            )
        ]
        wait_for(lambda: len(receiver.events()) >= len(stored), what="every event at the webhook")
        requests = list(receiver.requests)
    finally:
        receiver.close()

    for headers, body in requests:
        assert verify(SECRET, body, headers["X-Bcce-Timestamp"], headers["X-Bcce-Signature"])
    sent = [json.loads(body) for _, body in requests]
    assert {e["run_id"] for e in sent} == {run_id}

    def kinds(events: list[dict[str, object]]) -> Counter[tuple[object, object, object]]:
        return Counter((e["type"], e.get("step"), e["time"]) for e in events)

    # The CLI (run.submitted) and workers in several processes all deliver, each event once.
    assert kinds(sent) == kinds(stored)
    assert Counter(e["type"] for e in sent)["step.finished"] == 4
    assert [e["status"] for e in sent if e["type"] == "run.finished"] == ["succeeded"]


def test_a_webhook_that_never_answers_does_not_hold_up_a_run(
    url: str, pool: Workers, tmp_path: Path
) -> None:
    receiver = Receiver(hold=True)
    try:
        env = sink_env(url, receiver.url)
        pool.start(["policy"], env=env)
        pool.start(["command"], env=env)

        code, _ = run_hello(url, receiver.url, tmp_path)

        # The run ended, and its CLI exited, while the receiver held every request it got.
        assert code == 0
        assert receiver.requests
        assert not receiver.released.is_set()
    finally:
        receiver.close()
