"""The worker-side Celery app, for ``celery -A workers.app worker -Q command`` and friends.

``app`` is built on first access from the ``BCCE_*`` environment, so importing this module
(as ``bcce worker`` and embedded runs do) creates no app they do not use.
"""

from __future__ import annotations

import functools

from bcce.celery_app import BcceCelery, make_app
from bcce.settings import Settings
from bcce.steptypes import registry
from workers.tasks import register


def build(settings: Settings | None = None) -> BcceCelery:
    """A Celery app with every bcce task registered."""
    settings = settings or Settings()
    app = make_app(settings, registry())
    register(app)
    if settings.metrics_port is not None and not settings.embedded:
        from workers import metrics

        metrics.setup(app, settings, settings.metrics_port)
    if settings.reconcile_seconds > 0 and not settings.embedded:
        from workers import reconciler

        reconciler.setup(app, settings)
    return app


@functools.cache
def _default() -> BcceCelery:
    return build()


def __getattr__(name: str) -> BcceCelery:
    if name in ("app", "celery"):
        return _default()
    raise AttributeError(name)
