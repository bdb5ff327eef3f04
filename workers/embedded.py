"""Embedded mode: real Celery workers, one a pool, on threads of this process.

The chain, tasks and run store are the ones distributed mode uses; only the transport
differs (kombu's in-memory broker, and the in-process run store). Not ``task_always_eager``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from celery.worker import WorkController

from bcce.celery_app import BcceCelery
from bcce.errors import InfrastructureError

log = logging.getLogger(__name__)
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


@contextmanager
def embedded_workers(app: BcceCelery, pools: Sequence[str]) -> Iterator[list[str]]:
    """Run one worker thread per pool until the block ends; yields their hostnames."""
    # Celery's execution pools look tasks up on the current app, which is per thread.
    app.set_default()
    workers: list[tuple[WorkController, threading.Thread]] = []
    for pool in pools:
        ready = threading.Event()
        name = f"{pool}@embedded-{os.getpid()}"
        worker = WorkController(
            app=app,
            hostname=name,
            queues=[pool],
            pool="solo",
            concurrency=1,
            loglevel=logging.getLogger("celery").getEffectiveLevel(),
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=lambda _consumer, ready=ready: ready.set(),
        )
        thread = threading.Thread(target=worker.start, name=name, daemon=True)
        thread.start()
        if not ready.wait(START_TIMEOUT_SECONDS):
            raise InfrastructureError(f"embedded worker for pool {pool!r} did not start")
        workers.append((worker, thread))
    try:
        yield [thread.name for _, thread in workers]
    finally:
        # Stop all first, then join: each notices within one broker poll (about 2 s).
        for worker, _ in workers:
            worker.stop(in_sighandler=False)
        for _, thread in workers:
            thread.join(STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                log.warning("embedded worker %s did not stop in time", thread.name)
