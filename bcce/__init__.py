"""bcce: governed, auditable AI coding workflows as Celery chains on Redis."""

__version__ = "0.1.0"
