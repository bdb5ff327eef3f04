"""``bcce worker``: a Celery worker consuming one or more pools' queues with their presets."""

from __future__ import annotations

import os

import click

from bcce.cli.options import broker_option, settings_for
from bcce.errors import UsageError
from bcce.settings import Settings
from bcce.steptypes import POLICY_QUEUE, did_you_mean, queues, registry

# The gate's tasks are short, so its workers may prefetch; step pools take one at a time.
SHORT_POOL_PREFETCH = 4


def _check_keys(settings: Settings, pools: list[str]) -> None:
    """Refuse to start a pool that could not sign or verify grants (it would fail closed)."""
    from bcce.gate import keys_for

    keys = keys_for(settings)
    if POLICY_QUEUE in pools and keys.private is None:
        raise UsageError(
            "the policy pool signs grants: set BCCE_GATE_PRIVATE_KEY_FILE "
            "(make a pair with `bcce keys generate`)"
        )
    if any(p != POLICY_QUEUE for p in pools) and not keys.public:
        raise UsageError(
            "step pools run only what the gate signed: set BCCE_GATE_PUBLIC_KEYS "
            "to the gate's public key file (`bcce keys generate`)"
        )


@click.command("worker")
@click.option(
    "--pool",
    "pools",
    multiple=True,
    required=True,
    metavar="NAME",
    help="Pool (queue) to consume: policy, agent, command, diff or a plugin's; repeatable.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 512),
    default=None,
    help="Child processes (default: number of CPUs).",
)
@click.option(
    "--loglevel",
    "-l",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False),
)
@click.option(
    "--hostname",
    "-n",
    default=None,
    help="Node name (default: <pools>@<host>, as Flower shows it).",
)
@click.option(
    "--impl",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
    help="Celery execution pool.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus /metrics on this port (default BCCE_METRICS_PORT; unset: off).",
)
@click.option(
    "--supervise/--no-supervise",
    default=True,
    show_default=True,
    help="Restart the worker process if it dies of an error (e.g. a broker restart).",
)
@broker_option
def command(
    pools: tuple[str, ...],
    concurrency: int | None,
    loglevel: str,
    hostname: str | None,
    impl: str,
    metrics_port: int | None,
    supervise: bool,
    broker: str | None,
) -> None:
    """Start a worker for the given pools (needs BCCE_BROKER_URL or --broker)."""
    settings = settings_for(broker)
    if settings.embedded:
        raise UsageError(
            "bcce worker needs a broker: set BCCE_BROKER_URL or pass --broker "
            "redis://HOST:6379/0 (embedded runs start their own workers)"
        )
    if metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": metrics_port})
    types = registry()
    known = queues(types)
    for pool in pools:
        if pool not in known:
            raise UsageError(
                f"unknown pool {pool!r}{did_you_mean(pool, known)}; pools: {', '.join(known)}"
            )
    selected = list(dict.fromkeys(pools))
    _check_keys(settings, selected)
    prefetch = SHORT_POOL_PREFETCH if selected == [POLICY_QUEUE] else 1
    argv = [
        "worker",
        "--queues",
        ",".join(selected),
        "--loglevel",
        loglevel.upper(),
        "--hostname",
        # Unique by default, so Flower and `celery inspect` tell workers on one host apart.
        hostname or f"{'+'.join(selected)}-{os.getpid()}@%h",
        "--prefetch-multiplier",
        str(prefetch),
        "--task-events",
        "--pool",
        impl,
    ]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]

    if supervise:
        import logging
        import sys

        from bcce.supervisor import supervise as keep_alive

        logging.basicConfig(
            level=loglevel.upper(), format="[%(asctime)s: %(levelname)s/bcce] %(message)s"
        )
        if broker:
            os.environ["BCCE_BROKER_URL"] = broker  # not on a command line, where ps shows it
        child = [
            sys.executable,
            "-m",
            "bcce",
            "worker",
            "--no-supervise",
            "--loglevel",
            loglevel,
            "--impl",
            impl,
            *(f"--pool={p}" for p in selected),
        ]
        child += ["--concurrency", str(concurrency)] if concurrency else []
        child += ["--hostname", hostname] if hostname else []
        child += ["--metrics-port", str(metrics_port)] if metrics_port is not None else []
        raise SystemExit(keep_alive(child))

    from workers.app import build

    build(settings).worker_main(argv)
