"""boto3 clients with the region, timeouts and retries bcce wants, made in one place.

Every AWS call bcce makes (Bedrock, STS, S3, EventBridge) goes through :func:`client`, so
timeouts are short (nothing hangs on a machine without network) and throttling is retried
by botocore's own ``standard`` retry mode, never by hand-written loops.
"""

from __future__ import annotations

import os
from typing import Any

DEFAULT_REGION = "us-east-1"
# Seconds; a model call may take minutes, everything else should answer at once.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30
MODEL_READ_TIMEOUT = 600


def region(explicit: str | None = None) -> str:
    """The AWS region: explicit, else ``AWS_REGION``, ``AWS_DEFAULT_REGION``, else us-east-1."""
    return (
        explicit
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or DEFAULT_REGION
    )


def client(
    service: str,
    *,
    region_name: str | None = None,
    read_timeout: float = READ_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
    max_attempts: int = 4,
) -> Any:
    """A boto3 client for service, retrying throttling with backoff (botocore standard mode)."""
    import boto3  # imported here: `bcce --help` should not pay for boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
        user_agent_extra="bcce",
    )
    return boto3.session.Session().client(service, region_name=region(region_name), config=config)
