"""Event sinks: where run events go besides the run's Redis stream.

``BCCE_EVENT_SINKS`` lists sink URLs, comma-separated. A URL's scheme picks the sink among the
``bcce.event_sinks`` entry points (the built-ins are registered in pyproject.toml, plugins the
same way); an entry point names a factory ``(url, settings) -> Sink``:

- ``https://host/path`` (or ``http://``): one signed JSON POST per event (:class:`WebhookSink`);
- ``eventbridge://bus`` (``eventbridge://default``; ``?region=…``): EventBridge ``PutEvents``;
- ``cloudwatch://Namespace`` (``?region=…``): CloudWatch metrics of run and step outcomes.

The run store hands every event to the process's :class:`Dispatcher` once Redis has stored it
(:func:`current`, configured from the ``BCCE_*`` environment on first use). Each sink has a
bounded queue drained by its own daemon thread, so a slow or dead sink never holds up a step
nor the other sinks: when a queue is full its oldest event is dropped, and an event still not
delivered after retries is dropped too; both are counted (:meth:`Dispatcher.stats`) and logged.
Delivery is best effort: a process flushes its queues for up to :data:`FLUSH_AT_EXIT_SECONDS`
when it exits normally, events queued in a killed process are lost, and a retried event may
arrive twice (with the same ``id``). The Redis stream stays the record.

Webhook bodies are signed (docs/events.md shows how to verify): ``X-Bcce-Timestamp`` holds Unix
seconds and ``X-Bcce-Signature`` is ``sha256=`` + the hex HMAC-SHA256, keyed with
``BCCE_WEBHOOK_SECRET``, of ``<timestamp>.<body>``; receivers reject timestamps older than
:data:`SIGNATURE_TOLERANCE_SECONDS` to stop replays.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import parse_qsl, urlsplit

from bcce.errors import UsageError
from bcce.settings import Settings

if TYPE_CHECKING:
    import urllib.request

    from bcce.redact import Redactor

log = logging.getLogger(__name__)

SOURCE = "bcce"
"""The EventBridge ``Source`` of bcce's events."""
SIGNATURE_HEADER = "X-Bcce-Signature"
TIMESTAMP_HEADER = "X-Bcce-Timestamp"
SIGNATURE_TOLERANCE_SECONDS = 300
FLUSH_AT_EXIT_SECONDS = 3.0
WARN_EVERY_SECONDS = 30.0

Message = dict[str, Any]


class DeliveryError(Exception):
    """Raised by a sink when events were not delivered; ``failed`` of them (None: all)."""

    def __init__(self, message: str, failed: int | None = None) -> None:
        super().__init__(message)
        self.failed = failed


class Sink(Protocol):
    """Delivers batches of events, or raises; only its dispatcher thread calls ``send``."""

    name: str  # shown in logs, so without secrets
    batch_size: int

    def send(self, events: list[Message]) -> None: ...


@dataclass(frozen=True)
class SinkStats:
    """What one sink did in this process."""

    name: str
    delivered: int
    failed: int
    dropped: int
    queued: int


class _Lane:
    """One sink's bounded queue and the daemon thread that drains it."""

    def __init__(self, sink: Sink, size: int, redactor: Redactor) -> None:
        self.sink, self.size, self.redactor = sink, size, redactor
        self._reset()
        _lanes.add(self)

    def _reset(self) -> None:
        # Also run in a forked child: the parent's thread and lock holders do not exist there.
        self.delivered = self.failed = self.dropped = 0
        self._queue: deque[Message] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = self._closed = False
        self._warned_at: float | None = None

    def put(self, message: Message) -> None:
        with self._cond:
            if self._closed:
                self.dropped += 1
                return
            full = len(self._queue) >= self.size
            if full:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(message)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._drain, name=f"bcce-sink {self.sink.name}", daemon=True
                )
                self._thread.start()
            self._cond.notify()
            warn = full and self._should_warn()
        if warn:
            log.warning(
                "event sink %s: queue full (%d events), dropped the oldest; %d dropped so far",
                self.sink.name,
                self.size,
                self.dropped,
            )

    def flush(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def stats(self) -> SinkStats:
        with self._cond:
            return SinkStats(
                self.sink.name, self.delivered, self.failed, self.dropped, len(self._queue)
            )

    def _should_warn(self) -> bool:
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY_SECONDS:
            return False
        self._warned_at = now
        return True

    def _drain(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                count = min(self.sink.batch_size, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
                self._busy = True
            try:
                self.sink.send([self.redactor.json(message) for message in batch])
                failed, error = 0, None
            except Exception as exc:  # by design: a sink's failure must never reach a run
                failed, error = len(batch), exc
                if isinstance(exc, DeliveryError) and exc.failed is not None:
                    failed = min(exc.failed, len(batch))
            with self._cond:
                self._busy = False
                self.delivered += len(batch) - failed
                self.failed += failed
                warn = error is not None and self._should_warn()
                self._cond.notify_all()
            if warn:
                log.warning(
                    "event sink %s: %d event(s) not delivered (%d so far; first %s of run %s): %s",
                    self.sink.name,
                    failed,
                    self.failed,
                    batch[0].get("type"),
                    batch[0].get("run_id"),
                    error,
                    # A DeliveryError says it all; anything else is a sink's bug: show where.
                    exc_info=error if not isinstance(error, DeliveryError) else None,
                )
            elif error is not None:
                log.debug("event sink %s: %s", self.sink.name, error)


class Dispatcher:
    """Queues each event for every sink; :meth:`publish` never blocks on a sink."""

    def __init__(self, sinks: Sequence[Sink], queue_size: int = 1000) -> None:
        from bcce.redact import Redactor, secret_values

        # Secret-looking variables of this process (BCCE_WEBHOOK_SECRET, AWS keys…) and token
        # shapes are masked before an event leaves it.
        redactor = Redactor(secret_values(os.environ))
        self._lanes = [_Lane(sink, queue_size, redactor) for sink in sinks]

    def publish(self, run_id: str, event: Message) -> None:
        """Queue an event the run store wrote; the id is the same at every sink and retry."""
        message = {"id": os.urandom(16).hex(), "run_id": run_id, **event}
        for lane in self._lanes:
            lane.put(message)

    def flush(self, timeout: float) -> bool:
        """Wait up to timeout seconds for every queue to be empty; False if one is not."""
        deadline = time.monotonic() + timeout
        return all(lane.flush(max(0.0, deadline - time.monotonic())) for lane in self._lanes)

    def close(self) -> None:
        """Stop taking events; what is queued is still delivered, later events are dropped."""
        for lane in self._lanes:
            lane.close()

    def stats(self) -> list[SinkStats]:
        """Delivered, failed, dropped and queued events of each sink."""
        return [lane.stats() for lane in self._lanes]


class WebhookSink:
    """POSTs each event as signed JSON, retrying connection errors, 5xx and 429 with backoff."""

    batch_size = 1

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout: float = 5.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(url)
        self.url, self.secret, self.timeout, self.attempts = url, secret, timeout, attempts
        self.backoff, self.max_backoff, self._sleep = backoff, max_backoff, sleep
        # Paths and user info may hold tokens (Slack-style hook URLs): logs show the host only.
        self.name = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    def send(self, events: list[Message]) -> None:
        for event in events:
            self._post(event)

    def _post(self, event: Message) -> None:
        import http.client
        import urllib.error
        import urllib.request

        body = json.dumps(event, separators=(",", ":"), default=str).encode()
        for attempt in range(1, self.attempts + 1):
            timestamp = str(int(time.time()))
            request = urllib.request.Request(
                self.url,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "bcce",
                    "X-Bcce-Event": str(event.get("type")),
                    "X-Bcce-Delivery": str(event.get("id")),
                    TIMESTAMP_HEADER: timestamp,
                    SIGNATURE_HEADER: signature(self.secret, timestamp, body),
                },
            )
            wait = 0.0
            try:
                with _opener().open(request, timeout=self.timeout):
                    return
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code != 429 and exc.code < 500:
                    raise DeliveryError(f"{self.name} answered {exc.code}") from None
                problem, wait = f"answered {exc.code}", _retry_after(exc.headers.get("Retry-After"))
            except (OSError, http.client.HTTPException) as exc:  # URLError, refused, timeout
                problem = f"unreachable: {exc}"
            if attempt == self.attempts:
                raise DeliveryError(f"{self.name} {problem} ({attempt} attempts)")
            delay = self.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
            self._sleep(min(self.max_backoff, max(delay, wait)))


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Bcce-Signature`` of a body: ``sha256=`` + hex HMAC-SHA256 of ``<ts>.<body>``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes,
    body: bytes,
    timestamp: str,
    signed: str,
    *,
    now: float | None = None,
    tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """Whether a webhook request is authentic and recent (what a receiver checks)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), signed)


def webhook(url: str, settings: Settings) -> WebhookSink:
    """The ``http``/``https`` sink factory; it needs ``BCCE_WEBHOOK_SECRET``."""
    if not urlsplit(url).hostname:
        raise UsageError(f"BCCE_EVENT_SINKS: {url.partition('://')[0]}:// URL without a host")
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise UsageError(
            "BCCE_EVENT_SINKS has a webhook but BCCE_WEBHOOK_SECRET is not set: set it to the "
            "key receivers verify signatures with (docs/events.md)"
        )
    secret = settings.webhook_secret.get_secret_value().encode()
    return WebhookSink(url, secret, timeout=settings.event_sink_timeout_seconds)


def build(settings: Settings) -> Dispatcher | None:
    """A dispatcher for settings' sinks, or None when there are none; UsageError if misnamed."""
    urls = [u.strip() for u in (settings.event_sinks or "").split(",") if u.strip()]
    if not urls:
        return None
    from importlib.metadata import entry_points

    from bcce.steptypes import EVENT_SINKS_GROUP, did_you_mean

    factories = {ep.name: ep for ep in entry_points(group=EVENT_SINKS_GROUP)}
    sinks = []
    for url in urls:
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in factories:
            what = f"scheme {scheme!r}{did_you_mean(scheme, factories)}" if scheme else "no scheme"
            raise UsageError(
                f"BCCE_EVENT_SINKS: no event sink for {what}; installed: "
                f"{', '.join(sorted(factories))} (see `bcce plugin list`)"
            )
        factory = cast(Callable[[str, Settings], Sink], factories[scheme].load())
        sinks.append(factory(url, settings))
    return Dispatcher(sinks, settings.event_sink_queue_size)


def current() -> Dispatcher | None:
    """The process's dispatcher, built from the ``BCCE_*`` environment on first use."""
    with _lock:
        if not _configured:
            configure(Settings())
        return _current


def configure(settings: Settings) -> Dispatcher | None:
    """Make settings' sinks the process's (closing the previous ones) and return them."""
    global _current, _configured
    with _lock:
        built = build(settings)
        previous, _current, _configured = _current, built, True
    if previous is not None:
        previous.close()
    return built


def reset() -> None:
    """Forget the process's sinks: the next :func:`current` reads the environment again."""
    global _current, _configured
    with _lock:
        previous, _current, _configured = _current, None, False
    if previous is not None:
        previous.close()


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        # A redirected POST would be replayed as a GET without its body: fail instead.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(NoRedirects)


def _target(url: str) -> tuple[str, str | None]:
    """The target of ``scheme://target?region=r`` (may hold ``:`` and ``/``) and its region."""
    rest = url.partition("://")[2]
    target, _, query = rest.partition("?")
    options = dict(parse_qsl(query))
    unknown = sorted(set(options) - {"region"})
    if unknown:
        raise UsageError(f"BCCE_EVENT_SINKS: unknown option {unknown[0]!r} in {url}; known: region")
    return target, options.get("region")


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:  # an HTTP date: the backoff decides
        return 0.0


def _after_fork() -> None:
    global _lock
    _lock = threading.RLock()
    for lane in list(_lanes):
        lane._reset()


def _flush_at_exit() -> None:
    if _current is not None:
        _current.flush(FLUSH_AT_EXIT_SECONDS)


_lanes: weakref.WeakSet[_Lane] = weakref.WeakSet()
_lock = threading.RLock()
_current: Dispatcher | None = None
_configured = False
os.register_at_fork(after_in_child=_after_fork)
atexit.register(_flush_at_exit)
