"""The run store on Redis. Every Redis key bcce uses is built in this module and nowhere else.

Keys (prefix ``bcce:``):

- ``bcce:run:<id>``         hash: ``record`` (RunRecord JSON), ``snapshot`` (workflow JSON)
- ``bcce:run:<id>:steps``   hash: step id -> StepRecord JSON
- ``bcce:run:<id>:events``  stream of run events (``type``, ``data`` JSON)
- ``bcce:runs``             sorted set of run ids by creation time

Finished runs expire after the configured TTL; the index is pruned as it is read.

Every event written is also handed to the store's ``sink`` (the process's
:class:`bcce.sinks.Dispatcher` for stores made by :meth:`RunStore.from_url`), once Redis has
stored it: never from inside a transaction, never when the write failed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from bcce.errors import InfrastructureError, NotFound
from bcce.records import RunRecord, RunStatus, StepRecord
from bcce.settings import EMBEDDED_STATE_URL

if TYPE_CHECKING:
    from bcce.audit import Signer
    from bcce.sinks import Dispatcher

PREFIX = "bcce"
RUNS_INDEX = f"{PREFIX}:runs"
EVENTS_MAXLEN = 10_000
AUDIT_RETRIES = 50

R = TypeVar("R", RunRecord, StepRecord)
Event = dict[str, Any]

_servers: dict[str, Any] = {}
_servers_lock = threading.Lock()


def run_key(run_id: str) -> str:
    """The hash holding a run's record and workflow snapshot."""
    return f"{PREFIX}:run:{run_id}"


def steps_key(run_id: str) -> str:
    """The hash of a run's step records."""
    return f"{PREFIX}:run:{run_id}:steps"


def events_key(run_id: str) -> str:
    """The stream of a run's events."""
    return f"{PREFIX}:run:{run_id}:events"


def audit_key(run_id: str) -> str:
    """The run's audit log: a list of sealed records."""
    return f"{PREFIX}:run:{run_id}:audit"


def broker_queue_keys(queue: str) -> list[str]:
    """The Redis lists kombu keeps a queue's messages in, one per priority step.

    kombu's naming (``kombu.transport.redis``: ``<queue>\\x06\\x16<priority>``), here so
    metrics can read queue depth.
    """
    return [queue] + [f"{queue}\x06\x16{step}" for step in (3, 6, 9)]


def connect(url: str) -> redis.Redis:
    """A Redis client for url; ``memory://`` is an in-process Redis shared by this process."""
    if url == EMBEDDED_STATE_URL:
        import fakeredis

        with _servers_lock:
            server = _servers.setdefault(url, fakeredis.FakeServer())
        client: redis.Redis = fakeredis.FakeRedis(server=server, decode_responses=True)
        return client
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=3,
        socket_timeout=30,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


class RunStore:
    """Runs, steps and events of bcce on one Redis database."""

    def __init__(
        self,
        client: redis.Redis,
        ttl_seconds: int,
        sink: Dispatcher | None = None,
        signer: Signer | None = None,
    ) -> None:
        # Any: redis-py types decoded replies as bytes | str; ours always decode to str.
        self.client: Any = client
        self.ttl_seconds = ttl_seconds
        self.sink = sink
        self.signer = signer
        """Seals every event into the run's audit log (None: no audit log)."""

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int) -> RunStore:
        """A store on the Redis at url (``memory://`` for embedded mode), with the process's
        event sinks (``BCCE_EVENT_SINKS``, configured on first use: :func:`bcce.sinks.current`).
        """
        from bcce import sinks
        from bcce.audit import signer_for
        from bcce.settings import Settings

        return cls(connect(url), ttl_seconds, sinks.current(), signer_for(Settings()))

    def audit_lines(self, run_id: str) -> list[str]:
        """The run's audit log, one sealed record a line (see :mod:`bcce.audit`)."""
        return [str(line) for line in self.client.lrange(audit_key(run_id), 0, -1)]

    def restore_audit(self, run_id: str, lines: list[str]) -> None:
        """Put back a run's audit log as it was kept with its artifacts (embedded runs)."""
        if lines:
            self.client.rpush(audit_key(run_id), *lines)

    def _audit(self, run_id: str, events: tuple[Event, ...]) -> None:
        """Append events to the audit chain under an optimistic lock, so concurrent writers
        never fork it: three round trips (WATCH, read the last record, MULTI/RPUSH/EXEC).
        The list expires with the run: ``finish`` sets its TTL, which RPUSH keeps."""
        assert self.signer is not None
        key = audit_key(run_id)
        for _ in range(AUDIT_RETRIES):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    lines = self._seal(pipe.lindex(key, -1), run_id, events)
                    pipe.multi()
                    pipe.rpush(key, *lines)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue
        raise InfrastructureError(f"run {run_id}: could not append to its audit log (contention)")

    def ping(self, where: str) -> None:
        """Fail with an infrastructure error naming ``where`` if Redis does not answer."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise InfrastructureError(
                f"cannot reach Redis at {where}: {exc}: start Redis or set BCCE_BROKER_URL"
            ) from None

    def create(
        self,
        run: RunRecord,
        snapshot: dict[str, Any],
        steps: list[StepRecord],
        details: dict[str, Any] | None = None,
        *,
        announce: bool = True,
    ) -> None:
        """Record a new run with its steps, index it and emit ``run.submitted`` (with
        details; nothing when ``announce`` is false: a run loaded back from disk)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(
                run_key(run.id),
                mapping={
                    "record": run.model_dump_json(),
                    "snapshot": json.dumps(snapshot),
                },
            )
            pipe.hset(steps_key(run.id), mapping={s.id: s.model_dump_json() for s in steps})
            pipe.zadd(RUNS_INDEX, {run.id: run.created_at})
            submitted = {"type": "run.submitted", "status": run.status.value, **(details or {})}
            events = [self._emit(pipe, run.id, submitted)] if announce else []
            pipe.execute()
        self._written(run.id, *events)

    def delete(self, run_id: str) -> None:
        """Remove every trace of a run (used when it could not be enqueued)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(run_key(run_id), steps_key(run_id), events_key(run_id), audit_key(run_id))
            pipe.zrem(RUNS_INDEX, run_id)
            pipe.execute()

    def run(self, run_id: str) -> RunRecord:
        """The run's record; NotFound when it does not exist (or expired)."""
        raw = self.client.hget(run_key(run_id), "record")
        if raw is None:
            raise NotFound(f"no run {run_id!r} in the run store (it may have expired)")
        return RunRecord.model_validate_json(raw)

    def snapshot(self, run_id: str) -> dict[str, Any]:
        """The workflow exactly as the run was submitted."""
        raw = self.client.hget(run_key(run_id), "snapshot")
        if raw is None:
            raise NotFound(f"no run {run_id!r} in the run store (it may have expired)")
        data: dict[str, Any] = json.loads(raw)
        return data

    def statuses(self, run_ids: list[str]) -> dict[str, RunStatus | None]:
        """Each run's status in one round trip; None for a run that no longer exists."""
        with self.client.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hget(run_key(run_id), "record")
            raws = pipe.execute()
        return {
            run_id: None if raw is None else RunRecord.model_validate_json(raw).status
            for run_id, raw in zip(run_ids, raws, strict=True)
        }

    def step(self, run_id: str, step_id: str) -> StepRecord:
        """One step's record."""
        raw = self.client.hget(steps_key(run_id), step_id)
        if raw is None:
            raise NotFound(f"run {run_id!r} has no step {step_id!r}")
        return StepRecord.model_validate_json(raw)

    def steps(self, run_id: str) -> list[StepRecord]:
        """All step records of a run, in workflow order."""
        return self.run_with_steps(run_id)[1]

    def run_with_steps(self, run_id: str) -> tuple[RunRecord, list[StepRecord]]:
        """The run's record and its steps in workflow order, read in one round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(run_key(run_id), "record")
            pipe.hgetall(steps_key(run_id))
            raw_run, raw_steps = pipe.execute()
        if raw_run is None:
            raise NotFound(f"no run {run_id!r} in the run store (it may have expired)")
        run = RunRecord.model_validate_json(raw_run)
        steps = [
            StepRecord.model_validate_json(raw_steps[s]) for s in run.step_ids if s in raw_steps
        ]
        return run, steps

    def step_of_run(self, run_id: str, step_id: str) -> tuple[RunRecord, StepRecord]:
        """The run's record and one step's, read in one round trip."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(run_key(run_id), "record")
            pipe.hget(steps_key(run_id), step_id)
            raw_run, raw_step = pipe.execute()
        if raw_run is None:
            raise NotFound(f"no run {run_id!r} in the run store (it may have expired)")
        if raw_step is None:
            raise NotFound(f"run {run_id!r} has no step {step_id!r}")
        return RunRecord.model_validate_json(raw_run), StepRecord.model_validate_json(raw_step)

    def put_step(self, run_id: str, step: StepRecord, event: Event | None = None) -> None:
        """Store a step record (and its event) in one round trip.

        For the task that owns the step: the chain runs one task per step at a time, so the
        record it read is current. Others use :meth:`update_step`.
        """
        if event is None or self.signer is None:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(steps_key(run_id), step.id, step.model_dump_json())
                written = [] if event is None else [self._emit(pipe, run_id, event)]
                pipe.execute()
            self._written(run_id, *written)
            return
        # The hot path (every step's start and end): record, event and audit record in one
        # transaction, one round trip fewer than sealing afterwards.
        for _ in range(AUDIT_RETRIES):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(audit_key(run_id))
                    previous = pipe.lindex(audit_key(run_id), -1)
                    pipe.multi()
                    pipe.hset(steps_key(run_id), step.id, step.model_dump_json())
                    body = self._emit(pipe, run_id, event)
                    pipe.rpush(audit_key(run_id), *self._seal(previous, run_id, (body,)))
                    pipe.execute()
                except redis.WatchError:
                    continue
            if self.sink is not None:
                self.sink.publish(run_id, body)
            return
        raise InfrastructureError(f"run {run_id}: could not append to its audit log (contention)")

    def emit_all(self, run_id: str, events: list[Event]) -> None:
        """Append events to the run's history in one round trip."""
        if not events:
            return
        with self.client.pipeline(transaction=False) as pipe:
            written = [self._emit(pipe, run_id, event) for event in events]
            pipe.execute()
        self._written(run_id, *written)

    def update_run(
        self,
        run_id: str,
        change: Callable[[RunRecord], RunRecord | None],
        event: Event | None = None,
    ) -> RunRecord | None:
        """Apply change atomically; it returns the new record, or None to leave it as is."""
        return self._update(run_id, run_key(run_id), "record", RunRecord, change, event)

    def update_step(
        self,
        run_id: str,
        step_id: str,
        change: Callable[[StepRecord], StepRecord | None],
        event: Event | None = None,
    ) -> StepRecord | None:
        """Apply change to one step atomically, as :meth:`update_run`."""
        return self._update(run_id, steps_key(run_id), step_id, StepRecord, change, event)

    def finish(self, run_id: str, status: RunStatus, error: str | None = None) -> bool:
        """End the run in status unless it already ended; True when this call ended it."""
        now = time.time()

        def change(run: RunRecord) -> RunRecord | None:
            if run.status.terminal:
                return None
            return run.model_copy(
                update={
                    "status": status,
                    "finished_at": now,
                    "error": error,
                }
            )

        event = {"type": "run.finished", "status": status.value, "error": error}
        ended = self.update_run(run_id, change, event) is not None
        if ended:
            with self.client.pipeline(transaction=False) as pipe:
                for key in (
                    run_key(run_id),
                    steps_key(run_id),
                    events_key(run_id),
                    audit_key(run_id),
                ):
                    pipe.expire(key, self.ttl_seconds)
                pipe.execute()
        return ended

    def reopen(
        self,
        run_id: str,
        change: Callable[[RunRecord], RunRecord | None],
        steps: list[StepRecord],
        event: Event,
    ) -> RunRecord | None:
        """Make an ended run live again (resume): new record, reset steps, no expiry."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.watch(run_key(run_id))
            raw = pipe.hget(run_key(run_id), "record")
            if raw is None:
                raise NotFound(f"no run {run_id!r} in the run store (it may have expired)")
            new = change(RunRecord.model_validate_json(raw))
            if new is None:
                pipe.unwatch()
                return None
            pipe.multi()
            pipe.hset(run_key(run_id), "record", new.model_dump_json())
            if steps:
                pipe.hset(steps_key(run_id), mapping={s.id: s.model_dump_json() for s in steps})
            for key in (run_key(run_id), steps_key(run_id), events_key(run_id), audit_key(run_id)):
                pipe.persist(key)
            written = self._emit(pipe, run_id, event)
            pipe.execute()
        self._written(run_id, written)
        return new

    def last_event_id(self, run_id: str) -> str:
        """The id of the run's newest event ("0-0" when it has none), to follow from there."""
        newest = self.client.xrevrange(events_key(run_id), count=1)
        return str(newest[0][0]) if newest else "0-0"

    def emit(self, run_id: str, event: Event) -> None:
        """Append an event to the run's stream."""
        self._written(run_id, self._emit(self.client, run_id, event))

    def events(
        self, run_id: str, after: str = "0-0", block_ms: int | None = None
    ) -> list[tuple[str, Event]]:
        """Events after the stream id ``after``; waits up to block_ms for one when given."""
        if block_ms is None:
            raw = self.client.xrange(events_key(run_id), min=f"({after}")
        else:
            answer = self.client.xread({events_key(run_id): after}, block=block_ms, count=500)
            raw = answer[0][1] if answer else []
        return [(entry_id, _event(fields)) for entry_id, fields in raw]

    def list_runs(self, limit: int = 20, status: RunStatus | None = None) -> list[RunRecord]:
        """The most recent runs, newest first, optionally only those in one status."""
        runs: list[RunRecord] = []
        cursor, page = 0, max(limit, 50)
        while len(runs) < limit:
            ids = self.client.zrevrange(RUNS_INDEX, cursor, cursor + page - 1)
            if not ids:
                break
            cursor += page
            with self.client.pipeline(transaction=False) as pipe:
                for run_id in ids:
                    pipe.hget(run_key(run_id), "record")
                raws = pipe.execute()
            gone = [run_id for run_id, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:
                self.client.zrem(RUNS_INDEX, *gone)
            for raw in raws:
                if raw is not None:
                    run = RunRecord.model_validate_json(raw)
                    if status is None or run.status == status:
                        runs.append(run)
        return runs[:limit]

    def _update(
        self,
        run_id: str,
        key: str,
        field: str,
        model: type[R],
        change: Callable[[R], R | None],
        event: Event | None,
    ) -> R | None:
        written: list[Event] = []  # by the last attempt: a conflict runs it again

        def attempt(pipe: Any) -> R | None:
            written.clear()
            raw = pipe.hget(key, field)
            if raw is None:
                raise NotFound(f"no record {field!r} for run {run_id!r}")
            new = change(model.model_validate_json(raw))
            pipe.multi()
            if new is not None:
                pipe.hset(key, field, new.model_dump_json())
                if event is not None:
                    written.append(self._emit(pipe, run_id, event))
            return new

        result: R | None = self.client.transaction(attempt, key, value_from_callable=True)
        self._written(run_id, *written)
        return result

    def _seal(self, previous: str | None, run_id: str, events: tuple[Event, ...]) -> list[str]:
        """The audit records of events, following the record previous (None: the first)."""
        assert self.signer is not None
        count = int(json.loads(previous)["seq"]) + 1 if previous else 0
        lines = []
        for offset, event in enumerate(events):
            previous = self.signer.seal(previous, count + offset, run_id, event)
            lines.append(previous)
        return lines

    def _written(self, run_id: str, *events: Event) -> None:
        """Seal events Redis has stored into the run's audit log, then hand them to the
        sinks (queued, so it never waits for one)."""
        if self.signer is not None and events:
            self._audit(run_id, events)
        if self.sink is not None:
            for event in events:
                self.sink.publish(run_id, event)

    @staticmethod
    def _emit(client: Any, run_id: str, event: Event) -> Event:
        """Append event (or queue it on a pipeline); the body stored, as sinks should see it."""
        body = {"time": time.time(), **event}
        client.xadd(
            events_key(run_id),
            {"type": str(event["type"]), "data": json.dumps(body)},
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )
        return body


def _event(fields: dict[str, str]) -> Event:
    data: Event = json.loads(fields.get("data", "{}"))
    data.setdefault("type", fields.get("type", "?"))
    return data
