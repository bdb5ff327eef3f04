"""The AWS event sinks: Amazon EventBridge (``eventbridge://bus``) and CloudWatch metrics
(``cloudwatch://Namespace``), behind the dispatcher in :mod:`bcce.sinks`."""

from __future__ import annotations

import functools
import json
import time
from datetime import UTC, datetime
from typing import Any

from bcce import aws
from bcce.errors import UsageError
from bcce.settings import Settings
from bcce.sinks import SOURCE, DeliveryError, Message, _target


class _AwsSink:
    """A sink whose boto3 client (``service``, via :func:`bcce.aws.client`) is made on first use,
    in its dispatcher thread: commands that only open the run store never import boto3."""

    service = ""
    scheme = ""

    def __init__(
        self, target: str, *, region: str | None = None, timeout: float = 5.0, client: Any = None
    ) -> None:
        self.target, self.region, self.timeout = target, region, timeout
        self.name = f"{self.scheme}://{target}"
        if client is not None:
            self.client = client

    @functools.cached_property
    def client(self) -> Any:
        timeout = self.timeout
        return aws.client(
            self.service, region_name=self.region, read_timeout=timeout, connect_timeout=timeout
        )

    def _call(self, operation: str, **params: Any) -> Any:
        """The operation's answer; AWS's refusals and network errors (after botocore's
        retries) as DeliveryError, so that only a sink's bugs are logged with a traceback."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**params)
        except (BotoCoreError, ClientError) as exc:
            raise DeliveryError(str(exc)) from exc


class EventBridgeSink(_AwsSink):
    """Puts events on an EventBridge bus: Source ``bcce``, DetailType the event's type."""

    service, scheme = "events", "eventbridge"
    batch_size = 10  # PutEvents takes at most 10 entries

    def send(self, events: list[Message]) -> None:
        entries = [
            {
                "Source": SOURCE,
                "DetailType": str(event.get("type")),
                "Detail": json.dumps(event, default=str),
                "EventBusName": self.target,
                "Time": _when(event),
            }
            for event in events
        ]
        answer = self._call("put_events", Entries=entries)
        failed = int(answer.get("FailedEntryCount", 0))
        if failed:
            codes = sorted({e["ErrorCode"] for e in answer.get("Entries", []) if "ErrorCode" in e})
            raise DeliveryError(f"{failed} of {len(entries)} entries failed: {codes}", failed)


class CloudWatchSink(_AwsSink):
    """Puts run and step outcomes as CloudWatch metrics in a namespace (:func:`metrics`)."""

    service, scheme = "cloudwatch", "cloudwatch"
    batch_size = 50  # at most two data an event: well under PutMetricData's 1000

    def send(self, events: list[Message]) -> None:
        data = [datum for event in events for datum in metrics(event)]
        if data:
            self._call("put_metric_data", Namespace=self.target, MetricData=data)


# event type -> (metric counting it, whether it has a Status dimension)
METRICS = {
    "run.submitted": ("RunsSubmitted", False),
    "run.finished": ("RunsFinished", True),
    "step.finished": ("StepsFinished", True),
    "step.retrying": ("StepRetries", False),
    "step.denied": ("StepsDenied", False),
    "step.tool_denied": ("ToolCallsDenied", False),
}


def metrics(event: Message) -> list[Message]:
    """The CloudWatch data of an event: a count for the types in :data:`METRICS`, and the
    ``StepDuration`` of a finished step."""
    kind = str(event.get("type"))
    if kind not in METRICS:
        return []
    name, by_status = METRICS[kind]
    dims = [{"Name": "Status", "Value": str(event.get("status"))}] if by_status else []
    count = {"MetricName": name, "Value": 1.0, "Unit": "Count", "Timestamp": _when(event)}
    data = [{**count, "Dimensions": dims}]
    seconds = event.get("duration_seconds")
    if kind == "step.finished" and isinstance(seconds, int | float):
        timing = {"MetricName": "StepDuration", "Value": float(seconds), "Unit": "Seconds"}
        data.append({**data[0], **timing})
    return data


def eventbridge(url: str, settings: Settings) -> EventBridgeSink:
    """The ``eventbridge://bus`` sink factory (a bus name or ARN; ``default``)."""
    bus, region = _target(url)
    timeout = settings.event_sink_timeout_seconds
    return EventBridgeSink(bus or "default", region=region, timeout=timeout)


def cloudwatch(url: str, settings: Settings) -> CloudWatchSink:
    """The ``cloudwatch://Namespace`` sink factory."""
    namespace, region = _target(url)
    if not namespace:
        raise UsageError("BCCE_EVENT_SINKS: cloudwatch:// needs a namespace: cloudwatch://Bcce")
    timeout = settings.event_sink_timeout_seconds
    return CloudWatchSink(namespace, region=region, timeout=timeout)


def _when(event: Message) -> datetime:
    moment = event.get("time")
    return datetime.fromtimestamp(
        float(moment) if isinstance(moment, int | float) else time.time(), UTC
    )
