"""``bcce flower``: Flower on the configured broker, with authentication on."""

from __future__ import annotations

import os

import click

from bcce.cli.options import broker_option, settings_for
from bcce.errors import UsageError

AUTH_ENV = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH_PROVIDER", "FLOWER_AUTH")


@click.command("flower", context_settings={"ignore_unknown_options": True})
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (0.0.0.0 in a container).",
)
@click.option(
    "--basic-auth",
    "basic_auth",
    multiple=True,
    metavar="USER:PASSWORD",
    help="Allow this user (repeatable); or set FLOWER_BASIC_AUTH, or Flower's OAuth "
    "settings (FLOWER_AUTH_PROVIDER, FLOWER_AUTH, FLOWER_OAUTH2_*).",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Run without authentication (local use only; Flower's API stays off).",
)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@broker_option
def command(
    port: int,
    address: str,
    basic_auth: tuple[str, ...],
    no_auth: bool,
    flower_args: tuple[str, ...],
    broker: str | None,
) -> None:
    """Start Flower for bcce's pools; extra arguments go to Flower as they are."""
    settings = settings_for(broker)
    if settings.embedded:
        raise UsageError("bcce flower needs a broker: set BCCE_BROKER_URL or pass --broker")
    for pair in basic_auth:
        if ":" not in pair:
            raise UsageError(f"--basic-auth {pair!r}: expected USER:PASSWORD")
    authenticated = bool(basic_auth) or any(os.environ.get(name) for name in AUTH_ENV)
    if not authenticated and not no_auth:
        raise UsageError(
            "Flower shows task arguments and can revoke tasks, so it needs authentication: "
            "pass --basic-auth USER:PASSWORD, set FLOWER_BASIC_AUTH or Flower's OAuth "
            "settings, or pass --no-auth for local use"
        )
    argv = ["flower", f"--port={port}", f"--address={address}"]
    argv += [f"--basic-auth={','.join(basic_auth)}"] if basic_auth else []
    argv += list(flower_args)

    from workers.app import build

    build(settings).start(argv)
