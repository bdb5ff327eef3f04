"""Noticing, while a step runs, that its run was cancelled, so its process group is stopped.

One thread per worker process reads the records of the runs with a step running here (one
pipelined read every ``interval`` seconds, whatever their number) and sets each step's
cancel event once its run has ended. Executors hand the event to the sandbox, which then
stops the command's whole process group.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bcce.state import RunStore

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5


class CancelWatch:
    """Sets a running step's cancel event when its run ends (cancelled, denied, timed out)."""

    def __init__(self, store: RunStore, interval: float = POLL_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self._watched: dict[int, tuple[str, threading.Event]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watching(self, run_id: str) -> Iterator[threading.Event]:
        """An event set when run_id ends, for as long as the block runs."""
        event = threading.Event()
        key = id(event)
        with self._lock:
            self._watched[key] = (run_id, event)
            if self._thread is None:
                # Started on first use, so each prefork child gets its own after the fork.
                self._thread = threading.Thread(
                    target=self._loop, name="bcce-cancel-watch", daemon=True
                )
                self._thread.start()
        try:
            yield event
        finally:
            with self._lock:
                self._watched.pop(key, None)

    def _loop(self) -> None:
        while True:
            threading.Event().wait(self.interval)
            with self._lock:
                watched = list(self._watched.values())
            if not watched:
                continue
            try:
                ended = self._ended({run_id for run_id, _ in watched})
            except Exception:  # Redis away for a moment: the step's own timeout still holds
                log.warning("cancel watch could not read run records", exc_info=True)
                continue
            for run_id, event in watched:
                if run_id in ended and not event.is_set():
                    log.info("run %s ended while a step ran here: stopping the step", run_id)
                    event.set()

    def _ended(self, run_ids: set[str]) -> set[str]:
        statuses = self.store.statuses(sorted(run_ids))
        return {run_id for run_id, status in statuses.items() if status is None or status.terminal}
