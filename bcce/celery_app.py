"""``make_app(settings)``: the Celery app with bcce's queues, routes and reliability presets.

Front-end and workers build the same app from the same settings; only workers register
tasks (``workers.tasks.register``), so publishing is by task name alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery
from kombu.entity import Queue

from bcce.settings import Settings
from bcce.steptypes import POLICY_QUEUE, POLICY_TASK, StepType, queues

EMBEDDED_BROKER = "memory://localhost/"


class BcceCelery(Celery):  # type: ignore[misc]
    """The Celery app, carrying the settings and step types it was made from."""

    bcce_settings: Settings
    step_types: Mapping[str, StepType]


def make_app(settings: Settings, types: Mapping[str, StepType]) -> BcceCelery:
    """A Celery app configured for bcce; embedded mode when no broker is configured."""
    broker = settings.broker_url or EMBEDDED_BROKER
    backend = settings.result_backend or settings.broker_url
    app = BcceCelery("bcce", broker=broker, backend=backend, set_as_current=False)
    app.bcce_settings = settings
    app.step_types = types
    app.conf.update(config(settings, types))
    return app


def config(settings: Settings, types: Mapping[str, StepType]) -> dict[str, Any]:
    """Celery settings for bcce (a plain dict, to read and to test)."""
    names = queues(types)
    transport = {"visibility_timeout": settings.visibility_timeout}
    conf: dict[str, Any] = {
        # JSON only: no pickle is ever accepted.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A step's message is acknowledged after it ran; a lost worker hands it back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "result_expires": settings.run_ttl_seconds,
        "task_publish_retry_policy": {
            "max_retries": 3,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        # Unknown queues fail at publish time instead of creating a queue nobody reads.
        "task_queues": [Queue(name, routing_key=name) for name in names],  # type: ignore[no-untyped-call]
        "task_default_queue": POLICY_QUEUE,
        "task_create_missing_queues": False,
        "task_routes": {
            POLICY_TASK: {"queue": POLICY_QUEUE},
            **{t.task_name: {"queue": t.queue} for t in types.values()},
        },
        # Flower and operators see every task as it moves.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
    }
    if settings.embedded:
        conf.update(
            {
                "task_ignore_result": True,
                "worker_send_task_events": False,
                "task_send_sent_event": False,
                "broker_transport_options": {"polling_interval": 0.01},
            }
        )
    return conf
