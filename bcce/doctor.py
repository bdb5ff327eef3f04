"""``bcce doctor``: can this machine run bcce workflows? Each check is ok, warn or fail.

A check is a small function of a :class:`Context` returning a :class:`Check`; the check
``check_aws_credentials`` is named ``aws-credentials``. :func:`run` runs them all at once,
each network call with a short timeout, so doctor answers in seconds even without network.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from bcce.settings import Settings

Status = Literal["ok", "warn", "fail"]
ClientFactory = Callable[[str, str | None], Any]

# Seconds. AWS: one attempt, no retries; the broker: one connection attempt.
AWS_CONNECT_TIMEOUT = 2
AWS_READ_TIMEOUT = 3
BROKER_TIMEOUT = 2.0
SUBPROCESS_TIMEOUT = 10.0
DEADLINE = 20.0
"""The longest doctor waits for any check; one still running is reported as failed."""

MIN_PYTHON = (3, 11)
PACKAGES = ("bcce", "celery", "kombu", "redis")
AGENT_PACKAGE = "claude-agent-sdk"
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")


@dataclass(frozen=True)
class Check:
    """The outcome of one check: a one-line detail and, unless ok, a one-line fix."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        """The ``--json`` form."""
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def aws_client(service: str, region: str | None) -> Any:
    """A boto3 client that gives up fast: 2 s to connect, 3 s to read, one attempt."""
    from bcce import aws

    return aws.client(
        service,
        region_name=region,
        connect_timeout=AWS_CONNECT_TIMEOUT,
        read_timeout=AWS_READ_TIMEOUT,
        max_attempts=1,
    )


@dataclass(frozen=True)
class Context:
    """What the checks look at: the command's options, and how to make AWS clients."""

    broker: str | None = None
    """``--broker``: overrides BCCE_BROKER_URL."""
    model: str | None = None
    """``--model``: a model or inference profile id to check."""
    region: str | None = None
    """``--region``: overrides AWS_REGION for the AWS checks."""
    make_client: ClientFactory = aws_client

    def settings(self) -> Settings:
        """Settings from the environment with the ``--broker`` override; raises if invalid."""
        return Settings(broker_url=self.broker) if self.broker else Settings()

    def settings_or_defaults(self) -> Settings:
        """Valid settings, or the defaults with the broker URL when BCCE_* are invalid."""
        try:
            return self.settings()
        except ValueError:
            return Settings.model_construct(broker_url=self.broker_url)

    @property
    def broker_url(self) -> str | None:
        """The broker URL in use; None in embedded mode."""
        try:
            return self.settings().broker_url
        except ValueError:
            return self.broker or os.environ.get("BCCE_BROKER_URL") or None


CheckFn = Callable[[Context], Check]


def redact(url: str) -> str:
    """url without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def ping_broker(url: str, timeout: float = BROKER_TIMEOUT) -> tuple[float, str]:
    """The round trip of a PING to the Redis at url, in seconds, and the server's version.

    One connection attempt with a short timeout, no retries: raises ``redis.RedisError``
    (or ``ValueError`` for a URL redis-py cannot read) when it does not answer.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:
        client.ping()  # connects
        start = time.perf_counter()
        client.ping()
        rtt = time.perf_counter() - start
        info: Any = client.info("server")
        return rtt, str(info.get("redis_version", "?"))
    finally:
        client.close()


# The checks, in the order they are shown.


def check_python(ctx: Context) -> Check:
    """Python is new enough."""
    version = platform.python_version()
    if sys.version_info < MIN_PYTHON:
        wanted = ".".join(map(str, MIN_PYTHON))
        return Check("python", "fail", f"Python {version} ({sys.executable})", f"use {wanted}+")
    return Check("python", "ok", f"Python {version} ({sys.executable})")


def check_packages(ctx: Context) -> Check:
    """bcce, celery, kombu, redis and claude-agent-sdk are installed; their versions."""
    found: list[str] = []
    missing: list[str] = []
    for name in (*PACKAGES, AGENT_PACKAGE):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    detail = ", ".join(found)
    required = [m for m in missing if m != AGENT_PACKAGE]
    if required:
        return Check(
            "packages",
            "fail",
            f"missing {', '.join(required)}; found {detail or 'none'}",
            "reinstall bcce: pip install 'bcce[agent]'",
        )
    if missing:
        return Check(
            "packages",
            "warn",
            f"{detail}; no {AGENT_PACKAGE}: agent steps cannot run here",
            "pip install 'bcce[agent]'",
        )
    return Check("packages", "ok", detail)


def check_settings(ctx: Context) -> Check:
    """The BCCE_* environment makes valid settings."""
    from pydantic import ValidationError

    try:
        settings = ctx.settings()
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        where = f"BCCE_{str(first['loc'][0]).upper()}" if first["loc"] else "BCCE_*"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return Check(
            "settings",
            "fail",
            f"{where}: {first['msg']}{more}",
            f"fix or unset {where}",
        )
    mode = f"broker {redact(settings.broker_url)}" if settings.broker_url else "embedded mode"
    return Check("settings", "ok", f"BCCE_* settings valid ({mode})")


def check_broker(ctx: Context) -> Check:
    """The broker answers, and how fast; ok in embedded mode (there is none)."""
    url = ctx.broker_url
    if not url:
        return Check("broker", "ok", "embedded mode: no BCCE_BROKER_URL, runs execute in-process")
    shown = redact(url)
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        return Check(
            "broker",
            "warn",
            f"{shown}: only Redis brokers are checked",
            "use redis:// or rediss://",
        )
    try:
        rtt, version = ping_broker(url)
    except Exception as exc:  # redis.RedisError, or ValueError for a malformed URL
        return Check(
            "broker",
            "fail",
            f"cannot reach {shown}: {_one_line(exc)}",
            "start Redis, or fix BCCE_BROKER_URL / --broker (unset it for embedded mode)",
        )
    return Check("broker", "ok", f"{shown} answered PING in {rtt * 1000:.1f} ms (Redis {version})")


def check_workers(ctx: Context) -> Check:
    """Live workers consume each pool's queue; a pool with none is a warning."""
    url = ctx.broker_url
    if not url:
        return Check("workers", "ok", "embedded mode: each run starts its own workers")
    try:
        ping_broker(url)
    except Exception:
        return Check(
            "workers",
            "fail",
            f"cannot ask workers: the broker {redact(url)} does not answer",
            "fix the broker first (see the broker check)",
        )
    from bcce.celery_app import make_app
    from bcce.steptypes import queues, registry

    settings = ctx.settings_or_defaults()
    types = registry()
    app = make_app(settings, types)
    try:
        answer = app.control.inspect(timeout=settings.worker_check_timeout).active_queues() or {}
    except Exception as exc:  # kombu raises transport-specific errors
        return Check(
            "workers",
            "fail",
            f"cannot ask workers over the broker: {_one_line(exc)}",
            "check the broker (see the broker check)",
        )
    finally:
        app.close()
    counts = dict.fromkeys(queues(types), 0)
    for consumed in answer.values():
        for name in {q.get("name") for q in consumed or ()}:
            if name in counts:
                counts[name] += 1
    detail = f"{len(answer)} live worker(s); per pool: " + ", ".join(
        f"{pool} {n}" for pool, n in counts.items()
    )
    missing = [pool for pool, n in counts.items() if n == 0]
    if missing:
        pools = " ".join(f"--pool {p}" for p in missing)
        return Check(
            "workers",
            "warn",
            detail,
            f"start workers for {', '.join(missing)}: `bcce worker {pools}`",
        )
    return Check("workers", "ok", detail)


def find_claude() -> tuple[str | None, str]:
    """The ``claude`` CLI and where it came from: BCCE_CLAUDE_BIN, else the one bundled with
    claude-agent-sdk, else PATH. The path is None when there is none."""
    configured = os.environ.get("BCCE_CLAUDE_BIN")
    if configured:
        return shutil.which(configured), "BCCE_CLAUDE_BIN"
    spec = importlib.util.find_spec("claude_agent_sdk")  # finds, does not import
    name = "claude.exe" if os.name == "nt" else "claude"
    for folder in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(folder) / "_bundled" / name
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled), "bundled with claude-agent-sdk"
    return shutil.which("claude"), "PATH"


def check_claude(ctx: Context) -> Check:
    """The claude CLI agent steps run is there, and answers ``--version``."""
    path, source = find_claude()
    if path is None:
        if source == "BCCE_CLAUDE_BIN":
            return Check(
                "claude",
                "fail",
                f"BCCE_CLAUDE_BIN={os.environ.get('BCCE_CLAUDE_BIN')} is not an executable",
                "point BCCE_CLAUDE_BIN at the claude binary, or unset it",
            )
        return Check(
            "claude",
            "warn",
            "no claude CLI (BCCE_CLAUDE_BIN, claude-agent-sdk, PATH): agent steps cannot run",
            "pip install 'bcce[agent]' (bundles it), or set BCCE_CLAUDE_BIN",
        )
    ok, out = _version_of([path, "--version"])
    if not ok:
        return Check(
            "claude",
            "fail",
            f"{path} ({source}) --version: {out}",
            "reinstall it (pip install -U claude-agent-sdk) or set BCCE_CLAUDE_BIN",
        )
    return Check("claude", "ok", f"{out} at {path} ({source})")


def check_git(ctx: Context) -> Check:
    """git is installed (steps' changes to the workspace are tracked with it)."""
    path = shutil.which("git")
    if path is None:
        return Check(
            "git",
            "fail",
            "git not found on PATH: steps' workspace changes are tracked with git",
            "install git",
        )
    ok, out = _version_of([path, "--version"])
    if not ok:
        return Check("git", "fail", f"{path} --version: {out}", "reinstall git")
    return Check("git", "ok", f"{out} ({path})")


def check_aws_region(ctx: Context) -> Check:
    """An AWS region is chosen (bcce falls back to us-east-1 when none is)."""
    if ctx.region:
        return Check("aws-region", "ok", f"{ctx.region} (--region)")
    for var in REGION_VARS:
        if os.environ.get(var):
            return Check("aws-region", "ok", f"{os.environ[var]} ({var})")
    from bcce.aws import DEFAULT_REGION

    return Check(
        "aws-region",
        "warn",
        f"neither AWS_REGION nor AWS_DEFAULT_REGION is set: bcce uses {DEFAULT_REGION}",
        "export AWS_REGION=<region where your Bedrock models are>, e.g. us-west-2",
    )


def check_aws_credentials(ctx: Context) -> Check:
    """AWS credentials resolve, and STS says whose they are."""
    from bcce.models import aws_problem

    try:
        identity = ctx.make_client("sts", ctx.region).get_caller_identity()
    except Exception as exc:  # botocore: no credentials, rejected, unreachable
        reason, fix = aws_problem(exc, "sts:GetCallerIdentity")
        return Check("aws-credentials", "fail", f"cannot resolve AWS credentials: {reason}", fix)
    return Check(
        "aws-credentials", "ok", f"{identity.get('Arn')} (account {identity.get('Account')})"
    )


def check_model(ctx: Context) -> Check:
    """``--model`` is an Anthropic model or profile the region lists, callable on demand,
    and (where Bedrock says) with model access granted."""
    from bcce import aws, models

    if not ctx.model:
        return Check("model", "ok", "no --model given: not checked")
    wanted, region = ctx.model, aws.region(ctx.region)
    try:
        client = ctx.make_client("bedrock", ctx.region)
        entries = models.list_entries(client)
    except models.BedrockUnavailable as exc:
        return Check(
            "model", "fail", f"cannot list Bedrock models in {region}: {exc.reason}", exc.fix
        )
    except Exception as exc:  # making the client: invalid region, unknown profile
        reason, fix = models.aws_problem(exc, models.LIST_ACTIONS)
        return Check("model", "fail", f"cannot list Bedrock models in {region}: {reason}", fix)
    entry = models.find(entries, wanted)
    if entry is None:
        return Check(
            "model",
            "fail",
            f"{wanted} is not an Anthropic model or inference profile listed in {region}",
            f"pick one: `bcce models list --region {region}` or "
            f"`bcce models recommend --use-case coding --region {region}`",
        )
    if not entry.on_demand:
        fix = (
            f"use the inference profile {entry.use_profile}"
            if entry.use_profile
            else f"pick another: `bcce models recommend --use-case coding --region {region}`"
        )
        return Check(
            "model",
            "fail",
            f"{wanted} cannot be invoked by its id ({', '.join(entry.inference_types)})",
            fix,
        )
    [checked], _ = models.check_access(client, [entry])
    if checked.invocable is False:
        return Check(
            "model",
            "fail",
            f"{wanted}: Bedrock reports no model access for this account in {region}",
            "request access to the Anthropic models in the Bedrock console (Model access)",
        )
    access = "access granted" if checked.invocable else "access not checkable"
    detail = f"{wanted}: {entry.kind}, {entry.status}, {entry.invocation()}; {access}"
    if entry.status != models.ACTIVE:
        return Check(
            "model",
            "warn",
            detail,
            f"move to a current model: `bcce models recommend --use-case coding --region {region}`",
        )
    return Check("model", "ok", detail)


CHECKS: tuple[CheckFn, ...] = (
    check_python,
    check_packages,
    check_settings,
    check_broker,
    check_workers,
    check_claude,
    check_git,
    check_aws_region,
    check_aws_credentials,
    check_model,
)


def name_of(check: CheckFn) -> str:
    """The name a check function reports under: ``check_aws_region`` is ``aws-region``."""
    return getattr(check, "__name__", "check").removeprefix("check_").replace("_", "-")


def run(
    ctx: Context, checks: Sequence[CheckFn] | None = None, deadline: float = DEADLINE
) -> list[Check]:
    """Every check's outcome (of :data:`CHECKS` unless given), in order; they run concurrently.

    A check that raises fails with the error; one still running after deadline seconds
    fails as unanswered. The threads are daemons, so one stuck in a network call cannot
    keep the process from exiting (a ThreadPoolExecutor's would).
    """
    checks = CHECKS if checks is None else checks
    results: list[Check | None] = [None] * len(checks)

    def work(index: int, check: CheckFn) -> None:
        try:
            results[index] = check(ctx)
        except Exception as exc:
            results[index] = Check(
                name_of(check),
                "fail",
                f"check crashed: {type(exc).__name__}: {_one_line(exc)}",
                "report this as a bcce bug",
            )

    threads = [
        threading.Thread(target=work, args=(i, c), name=f"doctor-{name_of(c)}", daemon=True)
        for i, c in enumerate(checks)
    ]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return [
        result
        or Check(
            name_of(check),
            "fail",
            f"no answer within {deadline:g}s",
            "check network access, proxies and firewalls",
        )
        for check, result in zip(checks, results, strict=True)
    ]


def report(checks: Sequence[Check]) -> dict[str, Any]:
    """The ``--json`` document: ok unless a check failed."""
    return {
        "ok": all(c.status != "fail" for c in checks),
        "checks": [c.to_json() for c in checks],
    }


def _version_of(argv: list[str]) -> tuple[bool, str]:
    """(True, first line of output) when argv ran and exited 0; else (False, why)."""
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"no answer within {SUBPROCESS_TIMEOUT:g}s"
    except OSError as exc:
        return False, _one_line(exc)
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    first = lines[0] if lines else ""
    if proc.returncode != 0:
        return False, f"exit {proc.returncode}: {first}".rstrip(": ")
    return True, first or "(no output)"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
