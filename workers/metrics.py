"""Prometheus metrics of the worker pools, correct under the prefork pool.

``setup(app, settings)`` runs in the worker's main process before it forks: it points
prometheus_client's multiprocess mode at a fresh directory, serves ``/metrics`` from the
main process once the worker is ready, and marks child processes dead as they exit. Task
code records through :func:`get`, which creates the metric objects on first use (so after
the directory is set).

Queue depth, the autoscaling signal, is exported as its parts: ``bcce_queue_messages``
(waiting in Redis; every worker of a pool reports the same number) and
``bcce_worker_tasks`` (reserved or running in this worker). A pool's depth is
``max by (pool) (bcce_queue_messages) + sum by (pool) (bcce_worker_tasks)``.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import signals

from bcce.settings import Settings
from bcce.state import broker_queue_keys, connect

if TYPE_CHECKING:
    from bcce.celery_app import BcceCelery

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800)


class Metrics:
    """The metric families bcce records."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.runs = Counter("bcce_runs", "Runs that ended, by outcome.", ["outcome"])
        self.steps = Counter(
            "bcce_steps",
            "Step attempts that ended, by type, pool and outcome.",
            ["type", "pool", "outcome"],
        )
        self.step_duration = Histogram(
            "bcce_step_duration_seconds",
            "How long step attempts ran.",
            ["type", "pool"],
            buckets=DURATION_BUCKETS,
        )
        self.queue_wait = Histogram(
            "bcce_queue_wait_seconds",
            "From the gate's decision to the step starting on its pool.",
            ["pool"],
            buckets=WAIT_BUCKETS,
        )
        self.decisions = Counter(
            "bcce_policy_decisions", "Gate decisions, by rule and outcome.", ["rule", "outcome"]
        )
        self.agent_tokens = Counter(
            "bcce_agent_tokens",
            "Model tokens used by agent and prompt steps, by model and kind "
            "(input_tokens, output_tokens, cache_read_input_tokens, ...).",
            ["model", "kind"],
        )
        self.cost = Counter(
            "bcce_cost_usd",
            "What agent and prompt steps cost in USD, by model and env.team.",
            ["model", "team"],
        )
        self.tool_denials = Counter(
            "bcce_agent_tool_denials",
            "Agent tool calls denied by policy, by tool.",
            ["tool"],
        )


@functools.cache
def get() -> Metrics:
    """The metrics of this process."""
    return Metrics()


def setup(app: BcceCelery, settings: Settings, port: int) -> Path:
    """Prepare multiprocess metrics and serve them on port once the worker is ready."""
    directory = Path(tempfile.mkdtemp(prefix="bcce-metrics-"))
    if settings.metrics_dir is not None:
        directory = settings.metrics_dir
        shutil.rmtree(directory, ignore_errors=True)  # values of a previous run are stale
        directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)

    def serve(sender: Any = None, **_: Any) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        registry.register(QueueCollector(settings, sender))
        start_http_server(port, registry=registry)
        log.info("serving Prometheus metrics on :%d/metrics", port)

    def child_exited(pid: int | None = None, **_: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), path=str(directory))  # type: ignore[no-untyped-call]

    signals.worker_ready.connect(serve, weak=False)
    signals.worker_process_shutdown.connect(child_exited, weak=False)
    return directory


class QueueCollector:
    """Queue depth at scrape time: messages waiting in Redis, tasks held by this worker."""

    def __init__(self, settings: Settings, consumer: Any) -> None:
        self.client = connect(settings.broker_url or "")
        self.consumer = consumer

    def queues(self) -> list[str]:
        """Names of the queues this worker consumes."""
        task_consumer = getattr(self.consumer, "task_consumer", None)
        if task_consumer is None:
            return []
        return sorted(q.name for q in task_consumer.queues)

    def collect(self) -> Iterator[Any]:
        """Yield the two gauge families."""
        from celery.worker import state
        from prometheus_client.core import GaugeMetricFamily

        waiting = GaugeMetricFamily(
            "bcce_queue_messages", "Messages waiting in the pool's Redis queue.", labels=["pool"]
        )
        held = GaugeMetricFamily(
            "bcce_worker_tasks",
            "Tasks this worker holds, reserved or active.",
            labels=["pool", "state"],
        )
        names = self.queues()
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for name in names:
                    for key in broker_queue_keys(name):
                        pipe.llen(key)
                lengths = iter(pipe.execute())
            for name in names:
                waiting.add_metric([name], sum(next(lengths) for _ in broker_queue_keys(name)))
        except Exception:  # a scrape during a Redis blip reports what it can
            log.warning("could not read queue lengths", exc_info=True)
        for label, requests in (
            ("reserved", state.reserved_requests),
            ("active", state.active_requests),
        ):
            counts = {name: 0 for name in names}
            for request in list(requests):
                queue = (request.delivery_info or {}).get("routing_key")
                if queue in counts:
                    counts[queue] += 1
            for name, count in counts.items():
                held.add_metric([name, label], count)
        yield waiting
        yield held
