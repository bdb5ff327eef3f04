"""Tests for bcce.sinks: signed webhooks to a real local HTTP server, EventBridge and
CloudWatch on moto, the bounded queue, and the run store's hook that feeds them.

Fake tokens are built by concatenation at run time, so no secret-looking literal sits here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import fakeredis
import pytest
import redis
from botocore.stub import Stubber
from moto import mock_aws

from bcce import aws, sinks, sinks_aws
from bcce.errors import UsageError
from bcce.records import RunRecord, RunStatus, StepRecord
from bcce.settings import Settings
from bcce.sinks import (
    DeliveryError,
    Dispatcher,
    WebhookSink,
    signature,
    verify,
)
from bcce.sinks_aws import CloudWatchSink, EventBridgeSink
from bcce.state import RunStore, run_key
from bcce.steptypes import EVENT_SINKS_GROUP, found

SECRET = b"test-webhook-secret"
FLUSH = 20.0  # seconds; a generous bound that a passing test never waits for


class Receiver:
    """A real HTTP server in a thread that records webhook requests.

    It answers with ``statuses`` in turn, then 204; while ``hold`` is clear it keeps each
    request waiting (up to 60 s) after recording it.
    """

    def __init__(self, statuses: list[int] | None = None, hold: bool = False) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.released = threading.Event()
        if not hold:
            self.released.set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 204
                receiver.released.wait(60)
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                if status == 302:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.requests]

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


@pytest.fixture
def receiver(receivers: list[Receiver]) -> Receiver:
    receivers.append(Receiver())
    return receivers[-1]


@pytest.fixture
def dispatchers() -> Iterator[list[Dispatcher]]:
    made: list[Dispatcher] = []
    yield made
    for dispatcher in made:
        dispatcher.close()


def webhook(url: str, sleeps: list[float] | None = None, attempts: int = 3) -> WebhookSink:
    sleep = sleeps.append if sleeps is not None else (lambda _: None)
    return WebhookSink(url, SECRET, timeout=5, attempts=attempts, backoff=0.01, sleep=sleep)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/hook"


def run_record(run_id: str = "r1") -> RunRecord:
    return RunRecord(
        id=run_id,
        workflow="w",
        status=RunStatus.QUEUED,
        created_at=100.0,
        workspace="/ws",
        run_dir=f"/ws/.bcce_runs/{run_id}",
        step_ids=["build"],
    )


def create(store: RunStore, run_id: str = "r1") -> None:
    store.create(
        run_record(run_id), {"version": 1}, [StepRecord(id="build", type="cmd", queue="command")]
    )


def event(kind: str = "step.finished", **fields: Any) -> dict[str, Any]:
    return {"id": "e1", "run_id": "r1", "type": kind, "time": 1_800_000_000.5, **fields}


class Recorder:
    """What a run store hands its sink, for the hook's tests."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    def publish(self, run_id: str, event: dict[str, Any]) -> None:
        self.published.append((run_id, event))


class HeldSink:
    """A sink that takes events one at a time and waits to be released on each."""

    name = "held"
    batch_size = 1

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.got: list[dict[str, Any]] = []

    def send(self, events: list[dict[str, Any]]) -> None:
        self.entered.set()
        assert self.released.wait(FLUSH)
        self.got.extend(events)


# Webhooks


def test_a_webhook_posts_each_event_as_json_signed_with_the_shared_secret(
    receiver: Receiver,
) -> None:
    webhook(receiver.url).send([event(status="succeeded")])

    [(headers, body)] = receiver.requests
    assert json.loads(body) == event(status="succeeded")
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Bcce-Event"] == "step.finished"
    assert headers["X-Bcce-Delivery"] == "e1"
    stamp, signed = headers["X-Bcce-Timestamp"], headers["X-Bcce-Signature"]
    assert signed.startswith("sha256=")
    assert verify(SECRET, body, stamp, signed)
    assert not verify(b"another-secret", body, stamp, signed)
    assert not verify(SECRET, body.replace(b"succeeded", b"failed"), stamp, signed)
    assert not verify(SECRET, body, str(int(stamp) + 1), signed)


def test_a_replayed_webhook_is_rejected_once_its_timestamp_is_too_old() -> None:
    body, stamp = b'{"type":"run.finished"}', "1800000000"
    signed = signature(SECRET, stamp, body)

    assert verify(SECRET, body, stamp, signed, now=1_800_000_000 + 299)
    assert not verify(SECRET, body, stamp, signed, now=1_800_000_000 + 301)
    assert not verify(SECRET, body, "yesterday", signed)


def test_a_webhook_answering_500_is_retried_with_growing_backoff_then_given_up(
    receivers: list[Receiver],
) -> None:
    receivers.append(Receiver(statuses=[500, 502, 503]))
    sleeps: list[float] = []

    with pytest.raises(DeliveryError, match=r"answered 503 \(3 attempts\)"):
        webhook(receivers[0].url, sleeps).send([event()])

    requests = receivers[0].requests
    assert len(requests) == 3
    assert {headers["X-Bcce-Delivery"] for headers, _ in requests} == {"e1"}
    assert all(
        verify(SECRET, body, h["X-Bcce-Timestamp"], h["X-Bcce-Signature"]) for h, body in requests
    )
    assert len(sleeps) == 2 and 0 < sleeps[0] <= sleeps[1]


def test_a_webhook_answering_429_is_retried_until_it_accepts(receivers: list[Receiver]) -> None:
    receivers.append(Receiver(statuses=[429]))

    webhook(receivers[0].url).send([event()])

    assert len(receivers[0].requests) == 2


@pytest.mark.parametrize("status", [400, 401, 302])
def test_a_webhook_refusing_an_event_is_not_retried(receivers: list[Receiver], status: int) -> None:
    receivers.append(Receiver(statuses=[status]))

    with pytest.raises(DeliveryError, match=f"answered {status}"):
        webhook(receivers[0].url).send([event()])

    assert len(receivers[0].requests) == 1


def test_a_webhook_that_is_down_is_retried_then_given_up() -> None:
    sleeps: list[float] = []

    with pytest.raises(DeliveryError, match="unreachable"):
        webhook(closed_port_url(), sleeps, attempts=4).send([event()])

    assert len(sleeps) == 3


def test_logs_name_a_webhook_by_its_host_without_the_token_in_its_path() -> None:
    sink = WebhookSink("https://user:pw@hooks.example.com/services/T0/B0/xyz", SECRET)

    assert sink.name == "https://hooks.example.com"


# The dispatcher


def test_events_the_store_writes_reach_the_webhook_as_redis_stored_them(
    receiver: Receiver, dispatchers: list[Dispatcher]
) -> None:
    dispatchers.append(Dispatcher([webhook(receiver.url)]))
    store = RunStore(fakeredis.FakeRedis(decode_responses=True), 600, dispatchers[0])

    store.create(
        run_record(), {"version": 1}, [StepRecord(id="build", type="cmd", queue="command")]
    )
    store.update_run(
        "r1", lambda r: r.model_copy(update={"status": RunStatus.RUNNING}), {"type": "run.started"}
    )
    store.put_step(
        "r1",
        StepRecord(id="build", type="cmd", queue="command"),
        {"type": "step.started", "step": "build"},
    )
    store.emit_all("r1", [{"type": "step.tool_denied", "step": "build", "tool": "Bash"}])
    store.emit("r1", {"type": "step.note", "step": "build"})
    store.finish("r1", RunStatus.SUCCEEDED)
    store.reopen(
        "r1",
        lambda r: r.model_copy(update={"status": RunStatus.QUEUED}),
        [],
        {"type": "run.resumed"},
    )
    assert dispatchers[0].flush(FLUSH)

    stored = [e for _, e in store.events("r1")]
    sent = receiver.events()
    assert [e["type"] for e in sent] == [
        "run.submitted",
        "run.started",
        "step.started",
        "step.tool_denied",
        "step.note",
        "run.finished",
        "run.resumed",
    ]
    assert [{k: v for k, v in e.items() if k not in ("id", "run_id")} for e in sent] == stored
    assert {e["run_id"] for e in sent} == {"r1"}
    assert len({e["id"] for e in sent}) == len(sent)
    [stats] = dispatchers[0].stats()
    assert (stats.delivered, stats.failed, stats.dropped, stats.queued) == (7, 0, 0, 0)


def test_a_receiver_that_never_answers_does_not_hold_up_the_run(
    receivers: list[Receiver], dispatchers: list[Dispatcher]
) -> None:
    receivers.append(Receiver(hold=True))
    dispatchers.append(Dispatcher([webhook(receivers[0].url)]))
    store = RunStore(fakeredis.FakeRedis(decode_responses=True), 600, dispatchers[0])

    create(store)
    for n in range(50):
        store.emit("r1", {"type": "step.note", "n": n})

    # Every write returned while the receiver still holds the first request.
    assert len(store.events("r1")) == 51
    assert not receivers[0].released.is_set()
    receivers[0].released.set()
    assert dispatchers[0].flush(FLUSH)
    assert len(receivers[0].events()) == 51


def test_a_receiver_answering_500_costs_the_run_nothing_and_failures_are_counted(
    receivers: list[Receiver], dispatchers: list[Dispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    receivers.append(Receiver(statuses=[500] * 9))
    dispatchers.append(Dispatcher([webhook(receivers[0].url)]))
    store = RunStore(fakeredis.FakeRedis(decode_responses=True), 600, dispatchers[0])

    with caplog.at_level(logging.WARNING, logger="bcce.sinks"):
        create(store)
        store.emit("r1", {"type": "step.note"})
        store.emit("r1", {"type": "step.note"})
        store.emit("r1", {"type": "step.note"})
        assert dispatchers[0].flush(FLUSH)

    assert len(store.events("r1")) == 4
    [stats] = dispatchers[0].stats()
    assert (stats.delivered, stats.failed) == (1, 3)
    assert len(receivers[0].requests) == 10
    assert "1 event(s) not delivered" in caplog.text
    assert "answered 500 (3 attempts)" in caplog.text


def test_a_full_queue_drops_its_oldest_events_and_counts_them(
    dispatchers: list[Dispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    sink = HeldSink()
    dispatchers.append(Dispatcher([sink], queue_size=3))

    dispatchers[0].publish("r1", {"type": "step.note", "n": 0})
    assert sink.entered.wait(FLUSH)  # the first event is being sent; the queue is empty
    with caplog.at_level(logging.WARNING, logger="bcce.sinks"):
        for n in range(1, 10):
            dispatchers[0].publish("r1", {"type": "step.note", "n": n})
    [stats] = dispatchers[0].stats()
    assert (stats.dropped, stats.queued) == (6, 3)
    assert "queue full (3 events), dropped the oldest" in caplog.text

    sink.released.set()
    assert dispatchers[0].flush(FLUSH)
    assert [e["n"] for e in sink.got] == [0, 7, 8, 9]
    [stats] = dispatchers[0].stats()
    assert (stats.delivered, stats.dropped, stats.queued) == (4, 6, 0)


def test_a_sink_with_a_bug_is_logged_with_its_traceback_and_the_others_go_on(
    receiver: Receiver, dispatchers: list[Dispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        name, batch_size = "broken", 5

        def send(self, events: list[dict[str, Any]]) -> None:
            raise KeyError("oops")

    dispatchers.append(Dispatcher([Broken(), webhook(receiver.url)]))
    with caplog.at_level(logging.WARNING, logger="bcce.sinks"):
        dispatchers[0].publish("r1", {"type": "run.started"})
        dispatchers[0].publish("r1", {"type": "run.finished"})
        assert dispatchers[0].flush(FLUSH)

    broken, hook = dispatchers[0].stats()
    assert broken.failed == 2 and broken.delivered == 0
    assert hook.delivered == 2
    assert "KeyError: 'oops'" in caplog.text


def test_secrets_in_events_are_masked_before_they_leave_the_process(
    receiver: Receiver, dispatchers: list[Dispatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "ghp_" + "a1B2" * 9
    monkeypatch.setenv("DEPLOY_API_KEY", "value-of-the-deploy-key")
    dispatchers.append(Dispatcher([webhook(receiver.url)]))

    dispatchers[0].publish(
        "r1",
        {"type": "step.finished", "error": f"push with {token} failed: value-of-the-deploy-key"},
    )
    assert dispatchers[0].flush(FLUSH)

    [sent] = receiver.events()
    assert sent["error"] == "push with [REDACTED:github-token] failed: [REDACTED]"


def test_a_forked_child_delivers_its_own_events_and_not_its_parents(
    receiver: Receiver, dispatchers: list[Dispatcher]
) -> None:
    sink = HeldSink()
    dispatchers.append(Dispatcher([webhook(receiver.url)]))
    held = Dispatcher([sink])
    dispatchers.append(held)
    held.publish("r1", {"type": "parent.held"})  # queued in the parent when it forks
    assert sink.entered.wait(FLUSH)
    held.publish("r1", {"type": "parent.queued"})

    pid = os.fork()
    if pid == 0:  # the child: its lanes start empty, with a thread of their own
        ok = False
        try:
            dispatchers[0].publish("r1", {"type": "child.event"})
            ok = dispatchers[0].flush(FLUSH) and held.stats()[0].queued == 0
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert [e["type"] for e in receiver.events()] == ["child.event"]
    assert held.stats()[0].queued == 1
    sink.released.set()


# The run store's hook


def test_the_store_publishes_each_event_it_wrote_once_with_the_body_it_stored() -> None:
    recorder = Recorder()
    store = RunStore(fakeredis.FakeRedis(decode_responses=True), 600, recorder)  # type: ignore[arg-type]

    store.create(
        run_record(), {"version": 1}, [StepRecord(id="build", type="cmd", queue="command")]
    )
    store.put_step("r1", StepRecord(id="build", type="cmd", queue="command"))  # no event
    store.update_step(
        "r1", "build", lambda s: s.model_copy(update={"attempt": 2}), {"type": "step.retrying"}
    )
    store.finish("r1", RunStatus.FAILED, "boom")

    assert [run_id for run_id, _ in recorder.published] == ["r1"] * 3
    assert [e for _, e in recorder.published] == [e for _, e in store.events("r1")]


def test_a_change_that_changes_nothing_publishes_nothing() -> None:
    recorder = Recorder()
    store = RunStore(fakeredis.FakeRedis(decode_responses=True), 600, recorder)  # type: ignore[arg-type]
    create(store)
    store.finish("r1", RunStatus.SUCCEEDED)

    assert store.finish("r1", RunStatus.FAILED) is False
    assert store.update_run("r1", lambda r: None, {"type": "run.started"}) is None

    assert [e["type"] for _, e in recorder.published] == ["run.submitted", "run.finished"]


def test_a_transaction_that_meets_a_conflict_publishes_its_event_once() -> None:
    recorder = Recorder()
    server = fakeredis.FakeServer()
    other = fakeredis.FakeRedis(server=server, decode_responses=True)
    store = RunStore(fakeredis.FakeRedis(server=server, decode_responses=True), 600, recorder)  # type: ignore[arg-type]
    create(store)
    calls = 0

    def change(run: RunRecord) -> RunRecord:
        nonlocal calls
        calls += 1
        if calls == 1:  # someone else writes the record between our read and our write
            other.hset(
                run_key("r1"), "record", run.model_copy(update={"error": "x"}).model_dump_json()
            )
        return run.model_copy(update={"status": RunStatus.RUNNING})

    store.update_run("r1", change, {"type": "run.started"})

    assert calls == 2
    assert [e["type"] for _, e in recorder.published] == ["run.submitted", "run.started"]
    assert [e for _, e in recorder.published] == [e for _, e in store.events("r1")]


def test_an_event_whose_write_failed_is_not_published() -> None:
    recorder = Recorder()
    server = fakeredis.FakeServer()
    store = RunStore(fakeredis.FakeRedis(server=server, decode_responses=True), 600, recorder)  # type: ignore[arg-type]
    create(store)
    server.connected = False

    with pytest.raises(redis.ConnectionError):
        store.emit("r1", {"type": "step.note"})
    with pytest.raises(redis.ConnectionError):
        store.put_step(
            "r1", StepRecord(id="build", type="cmd", queue="command"), {"type": "step.started"}
        )

    assert [e["type"] for _, e in recorder.published] == ["run.submitted"]


@pytest.fixture
def process_sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("BCCE_"):
            monkeypatch.delenv(name)
    sinks.reset()
    yield
    sinks.reset()


def test_stores_from_a_url_have_no_sink_when_none_is_configured(process_sinks: None) -> None:
    assert RunStore.from_url("memory://", 60).sink is None


def test_stores_from_a_url_send_to_the_sinks_of_the_environment(
    process_sinks: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCCE_EVENT_SINKS", f" {receiver.url} ,")
    monkeypatch.setenv("BCCE_WEBHOOK_SECRET", SECRET.decode())

    store = RunStore.from_url("memory://", 60)
    create(store, "r-env")

    assert store.sink is sinks.current() is not None
    assert RunStore.from_url("memory://", 60).sink is store.sink  # one per process
    assert store.sink.flush(FLUSH)
    [(headers, body)] = receiver.requests
    assert json.loads(body)["run_id"] == "r-env"
    assert verify(SECRET, body, headers["X-Bcce-Timestamp"], headers["X-Bcce-Signature"])


# Configuration


def test_the_built_in_sinks_are_registered_as_entry_points() -> None:
    names = {f.name for f in found(EVENT_SINKS_GROUP)}

    assert {"http", "https", "eventbridge", "cloudwatch"} <= names


def test_sink_urls_are_read_from_the_settings() -> None:
    dispatcher = sinks.build(
        Settings(
            event_sinks="https://hooks.example.com/bcce, eventbridge://default,"
            "eventbridge://arn:aws:events:eu-west-1:123456789012:event-bus/ops?region=eu-west-1,"
            "cloudwatch://Bcce/Runs",
            webhook_secret="s3cret",  # type: ignore[arg-type]
            event_sink_queue_size=7,
        )
    )
    assert dispatcher is not None
    try:
        assert [s.name for s in dispatcher.stats()] == [
            "https://hooks.example.com",
            "eventbridge://default",
            "eventbridge://arn:aws:events:eu-west-1:123456789012:event-bus/ops",
            "cloudwatch://Bcce/Runs",
        ]
        lanes = dispatcher._lanes
        assert isinstance(lanes[2].sink, EventBridgeSink) and lanes[2].sink.region == "eu-west-1"
        assert isinstance(lanes[3].sink, CloudWatchSink) and lanes[3].sink.target == "Bcce/Runs"
        assert {lane.size for lane in lanes} == {7}
    finally:
        dispatcher.close()
    assert sinks.build(Settings(event_sinks=" , ")) is None


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        (
            "htps://hooks.example.com/x",
            r"no event sink for scheme 'htps' \(did you mean 'https'\?\)",
        ),
        ("hooks.example.com/x", "no event sink for no scheme"),
        ("https://hooks.example.com/x", "BCCE_WEBHOOK_SECRET is not set"),
        ("https:///x", "URL without a host"),
        ("cloudwatch://", "cloudwatch:// needs a namespace"),
        ("eventbridge://bus?regoin=x", "unknown option 'regoin'"),
    ],
)
def test_a_sink_url_that_cannot_work_is_a_usage_error(
    process_sinks: None, urls: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        sinks.build(Settings(event_sinks=urls))


# EventBridge and CloudWatch


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def test_events_reach_an_eventbridge_bus_with_source_bcce_and_their_type(
    aws_env: None, dispatchers: list[Dispatcher]
) -> None:
    events, sqs = boto3.client("events"), boto3.client("sqs")
    queue = sqs.create_queue(QueueName="bcce-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.create_event_bus(Name="ops")
    events.put_rule(Name="bcce", EventBusName="ops", EventPattern=json.dumps({"source": ["bcce"]}))
    events.put_targets(Rule="bcce", EventBusName="ops", Targets=[{"Id": "q", "Arn": arn}])
    dispatchers.append(Dispatcher([sinks_aws.eventbridge("eventbridge://ops", Settings())]))
    store = RunStore(fakeredis.FakeRedis(decode_responses=True), 600, dispatchers[0])

    create(store)
    for n in range(11):  # more than one PutEvents batch
        store.emit("r1", {"type": "step.note", "n": n})
    store.finish("r1", RunStatus.SUCCEEDED)
    assert dispatchers[0].flush(FLUSH)

    got = []
    while answer := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        got += [json.loads(m["Body"]) for m in answer]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(answer)
            ],
        )
    assert len(got) == 13
    assert {e["source"] for e in got} == {"bcce"}
    assert {e["detail"]["run_id"] for e in got} == {"r1"}
    by_type = {e["detail-type"]: e["detail"] for e in got}
    assert by_type["run.finished"]["status"] == "succeeded"
    assert sorted(e["detail"]["n"] for e in got if e["detail-type"] == "step.note") == list(
        range(11)
    )
    assert dispatchers[0].stats()[0].delivered == 13


def test_an_eventbridge_bus_that_does_not_exist_is_counted_not_raised(
    aws_env: None, dispatchers: list[Dispatcher]
) -> None:
    dispatchers.append(Dispatcher([sinks_aws.eventbridge("eventbridge://missing", Settings())]))

    dispatchers[0].publish("r1", {"type": "run.started", "time": 1.0})
    assert dispatchers[0].flush(FLUSH)

    [stats] = dispatchers[0].stats()
    assert (stats.delivered, stats.failed) == (0, 1)


def test_entries_eventbridge_refuses_are_counted_as_failed(aws_env: None) -> None:
    client = aws.client("events")
    sink = EventBridgeSink("ops", client=client)
    with Stubber(client) as stub:
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [
                    {"EventId": "11710aed-b79e-4468-a20b-bb3c0c3b4860"},
                    {"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service error"},
                ],
            },
        )
        with pytest.raises(
            DeliveryError, match=r"1 of 2 entries failed: \['InternalFailure'\]"
        ) as raised:
            sink.send([event("run.started"), event("run.finished")])
    assert raised.value.failed == 1


def test_run_and_step_outcomes_become_cloudwatch_metrics(aws_env: None) -> None:
    now = datetime.now(UTC).timestamp()
    sink = sinks_aws.cloudwatch("cloudwatch://Bcce/Test", Settings())
    sink.send(
        [
            event("run.submitted", time=now),
            event("step.started", time=now),
            event("step.finished", time=now, status="succeeded", duration_seconds=1.5),
            event("step.finished", time=now, status="succeeded", duration_seconds=2.5),
            event("step.finished", time=now, status="failed", duration_seconds=4.0),
            event("run.finished", time=now, status="failed"),
        ]
    )

    cw = boto3.client("cloudwatch")
    names = {m["MetricName"] for m in cw.list_metrics(Namespace="Bcce/Test")["Metrics"]}
    assert names == {"RunsSubmitted", "StepsFinished", "StepDuration", "RunsFinished"}

    def stats(name: str, status: str) -> dict[str, Any]:
        [point] = cw.get_metric_statistics(
            Namespace="Bcce/Test",
            MetricName=name,
            Dimensions=[{"Name": "Status", "Value": status}],
            StartTime=datetime.now(UTC) - timedelta(minutes=5),
            EndTime=datetime.now(UTC) + timedelta(minutes=5),
            Period=600,
            Statistics=["Sum", "SampleCount"],
        )["Datapoints"]
        return point

    assert stats("StepDuration", "succeeded")["Sum"] == 4.0
    assert stats("StepsFinished", "failed")["SampleCount"] == 1
    assert stats("RunsFinished", "failed")["Sum"] == 1


def test_only_outcome_events_make_metrics() -> None:
    assert sinks_aws.metrics(event("step.started")) == []
    assert [d["MetricName"] for d in sinks_aws.metrics(event("step.retrying"))] == ["StepRetries"]
    [finished] = sinks_aws.metrics(event("step.finished", status="cancelled"))  # no duration
    assert finished["Dimensions"] == [{"Name": "Status", "Value": "cancelled"}]
    assert finished["Timestamp"] == datetime.fromtimestamp(1_800_000_000.5, UTC)
