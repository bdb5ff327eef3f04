"""Queue depth as the metrics report it, against kombu's Redis list naming."""

from __future__ import annotations

from types import SimpleNamespace

import fakeredis

from bcce.state import broker_queue_keys
from workers.metrics import QueueCollector


def test_queue_messages_count_every_priority_list_of_the_consumed_queues() -> None:
    client = fakeredis.FakeRedis()
    plain, *prioritised = broker_queue_keys("command")
    client.rpush(plain, "m1", "m2")
    client.rpush(prioritised[0], "m3")
    client.rpush("agent", "not consumed here")
    consumer = SimpleNamespace(
        task_consumer=SimpleNamespace(queues=[SimpleNamespace(name="command")])
    )
    collector = QueueCollector.__new__(QueueCollector)
    collector.client = client
    collector.consumer = consumer
    waiting, held = list(collector.collect())
    assert [(s.labels, s.value) for s in waiting.samples] == [({"pool": "command"}, 3.0)]
    assert {(s.labels["state"], s.value) for s in held.samples} == {("reserved", 0), ("active", 0)}


def test_kombu_names_priority_lists_as_the_metrics_expect() -> None:
    from kombu.transport.redis import Channel

    channel = Channel.__new__(Channel)
    expected = {Channel._q_for_pri(channel, "command", p) for p in (0, 3, 6, 9)}
    assert set(broker_queue_keys("command")) == expected
