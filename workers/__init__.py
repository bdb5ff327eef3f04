"""bcce's back-end: the Celery tasks and step executors that run inside the worker pools."""
