"""Options shared by several commands, and settings with their CLI overrides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from bcce.errors import UsageError
from bcce.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def broker_option(fn: F) -> F:
    """``--broker URL``: overrides BCCE_BROKER_URL for this call."""
    decorated: F = click.option(
        "--broker",
        metavar="URL",
        default=None,
        help="Broker and run-store URL (redis:// or rediss://); default BCCE_BROKER_URL, "
        "or embedded mode when unset.",
    )(fn)
    return decorated


def vars_option(fn: F) -> F:
    """``--var KEY=VALUE`` (repeatable): substitution variables."""
    decorated: F = click.option(
        "--var",
        "variables",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set a ${KEY} substitution variable (repeatable).",
    )(fn)
    return decorated


def settings_for(broker: str | None) -> Settings:
    """Settings from the environment, with the command's overrides."""
    try:
        return Settings(broker_url=broker) if broker else Settings()
    except ValueError as exc:
        raise UsageError(f"invalid BCCE_* setting: {exc}") from None


def parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--var KEY=VALUE`` pairs as a dict."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--var {pair!r}: expected KEY=VALUE with KEY a variable name")
        out[key] = value
    return out
