"""Who is acting: the AWS caller identity where credentials are at hand, else the OS user.

Recorded when a run is submitted, approved, rejected or cancelled. With AWS credentials
(an IAM Identity Center session, a role, keys) the principal is the STS caller ARN, whose
session name shows the person for Identity Center roles
(``arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Dev_abc/alice@example.com``).
Without them it is ``user@host``, with the git identity beside it. ``BCCE_IDENTITY=os``
skips AWS; the STS call has short timeouts and is made once a process.
"""

from __future__ import annotations

import functools
import getpass
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Any of these means credentials may be found without a network round trip to guess.
_AWS_HINTS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@dataclass(frozen=True)
class Identity:
    """One actor."""

    principal: str
    """The STS caller ARN, or ``user@host``."""
    source: str
    """``aws`` or ``os``."""
    os_user: str
    git_email: str | None = None

    @property
    def person(self) -> str:
        """The readable part: an assumed role's session name, else the principal."""
        if ":assumed-role/" in self.principal:
            return self.principal.rsplit("/", 1)[-1]
        return self.principal

    def to_json(self) -> dict[str, str | None]:
        return {
            "principal": self.principal,
            "source": self.source,
            "os_user": self.os_user,
            "git_email": self.git_email,
        }


@functools.cache
def current() -> Identity:
    """This process's actor (looked up once)."""
    os_user = f"{_user()}@{socket.gethostname()}"
    git_email = _git_email()
    if os.environ.get("BCCE_IDENTITY", "auto") != "os" and _aws_configured():
        arn = _caller_arn()
        if arn:
            return Identity(arn, "aws", os_user, git_email)
    return Identity(os_user, "os", os_user, git_email)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container with a bare uid)
        return str(os.getuid())


def _aws_configured() -> bool:
    if any(os.environ.get(name) for name in _AWS_HINTS):
        return True
    home = Path(os.environ.get("HOME", "~")).expanduser()
    config = os.environ.get("AWS_CONFIG_FILE") or str(home / ".aws" / "config")
    credentials = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or str(
        home / ".aws" / "credentials"
    )
    return Path(config).is_file() or Path(credentials).is_file()


def _caller_arn() -> str | None:
    from bcce import aws

    try:
        sts = aws.client("sts", read_timeout=3, connect_timeout=2, max_attempts=1)
        arn = sts.get_caller_identity().get("Arn")
    except Exception:  # no credentials after all, no network, expired session
        return None
    return str(arn) if arn else None


def _git_email() -> str | None:
    try:
        done = subprocess.run(
            ["git", "config", "--get", "user.email"],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None
