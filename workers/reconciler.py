"""The periodic reconciler: a thread in each worker that consumes the ``policy`` queue.

Every ``BCCE_RECONCILE_SECONDS`` one of them (a Redis lock elects it) looks for orphaned
runs (:mod:`bcce.reconcile`) and re-enqueues their step, so a lost message delays a run by
at most ``BCCE_RECONCILE_AFTER_SECONDS`` plus one interval instead of stalling it forever.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from celery import signals

from bcce import reconcile
from bcce.celery_app import BcceCelery
from bcce.settings import Settings
from bcce.state import PREFIX, RunStore
from bcce.steptypes import POLICY_QUEUE, queues

log = logging.getLogger(__name__)
LOCK = f"{PREFIX}:reconcile:lock"


def setup(app: BcceCelery, settings: Settings) -> None:
    """Start the reconciler when a worker that serves the gate is ready; stop it with it."""
    stop = threading.Event()

    def ready(sender: Any = None, **_: Any) -> None:
        consumer = getattr(sender, "task_consumer", None)
        names = {q.name for q in getattr(consumer, "queues", ())}
        if POLICY_QUEUE not in names:
            return
        threading.Thread(
            target=run_forever, args=(app, settings, stop), name="bcce-reconciler", daemon=True
        ).start()

    signals.worker_ready.connect(ready, weak=False)
    signals.worker_shutdown.connect(lambda **_: stop.set(), weak=False)


def run_forever(app: BcceCelery, settings: Settings, stop: threading.Event) -> None:
    """Reconcile every interval while this worker holds the lock; errors are logged."""
    store = RunStore.from_url(settings.effective_state_url, settings.run_ttl_seconds)
    me = socket.gethostname()
    interval = settings.reconcile_seconds
    while not stop.wait(interval):
        try:
            if not store.client.set(LOCK, me, nx=True, ex=max(1, int(interval))):
                continue
            for orphan in reconcile.find(
                store, queues(app.step_types), settings.reconcile_after_seconds
            ):
                done = reconcile.repair(app, store, orphan, "requeue")
                log.warning(
                    "run %s: step %s had no message for %.0fs; %s",
                    done.run_id,
                    done.step_id,
                    done.quiet_seconds,
                    done.action,
                )
        except Exception:
            log.exception("reconciler pass failed; trying again in %ss", interval)
