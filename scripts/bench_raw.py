"""The baseline for scripts/bench.py: a raw Celery gated chain with bcce's worker settings.

``gate`` is a no-op standing in for the policy check; ``step`` runs ``true`` in a
subprocess, as a ``cmd: true`` step does. Workers: ``celery -A bench_raw worker -Q policy``.
"""

from __future__ import annotations

import os
import subprocess

from celery import Celery

from bcce.celery_app import config
from bcce.settings import Settings
from bcce.steptypes import registry

BROKER = os.environ["BENCH_RAW_BROKER"]

app = Celery("raw", broker=BROKER, backend=BROKER, set_as_current=False)
app.conf.update(config(Settings(broker_url=BROKER), registry()))
app.conf.task_routes = {"raw.gate": {"queue": "policy"}, "raw.step": {"queue": "command"}}


@app.task(name="raw.gate", shared=False)
def gate(run_id: str, step_id: str) -> bool:
    """Allow everything."""
    return True


@app.task(name="raw.step", shared=False)
def step(run_id: str, step_id: str) -> int:
    """Run ``true`` like a cmd step would."""
    return subprocess.run(["true"], check=False).returncode
