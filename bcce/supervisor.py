"""Keep one worker process alive: restart it when it dies of an error, stop it on request.

Celery's worker can end itself with "Unrecoverable error" when the broker connection drops
at the wrong moment (kombu's Redis transport restoring unacked messages on a closed
channel). A worker under Kubernetes or systemd is restarted by them; ``bcce worker``
restarts its own worker process too, so a Redis restart never leaves a pool empty.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger(__name__)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
MAX_BACKOFF_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0


def supervise(argv: Sequence[str]) -> int:
    """Run argv until it exits 0 or a signal asks it to stop; returns its last exit code."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True  # Celery: TERM is a warm shutdown, QUIT a cold one
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    backoff = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(list(argv))
        code = child.wait()
        if stopping or code == 0:
            return code
        if time.monotonic() - started > HEALTHY_AFTER_SECONDS:
            backoff = 1.0
        log.warning("worker exited with code %d; restarting in %.0fs", code, backoff)
        deadline = time.monotonic() + backoff
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
        if stopping:
            return code
        backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
