"""``bcce config``: the effective settings and where each came from, secrets masked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr
from pydantic_settings import (
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
)

from bcce.cli.options import settings_for
from bcce.configsources import ConfigFileSource, SsmSource, config_file
from bcce.redact import MASK, redact, secret_key, secret_values
from bcce.settings import Settings


@dataclass(frozen=True)
class Provenance:
    """Where a setting's value came from."""

    source: str
    """``env``, ``file``, ``ssm`` or ``default`` (``dotenv``, ``secrets`` if configured)."""
    where: str | None = None
    """The variable, the file's path or the parameter's name; None for a default."""

    def __str__(self) -> str:
        return f"{self.source} {self.where}" if self.where else self.source


def sources_of(settings: Settings) -> dict[str, Provenance]:
    """Where each field of ``settings`` came from: the first source that sets it, asked in
    the order of ``Settings.settings_customise_sources`` (so the two cannot disagree).
    """
    sources = Settings.settings_customise_sources(
        Settings,
        InitSettingsSource(Settings, {}),
        EnvSettingsSource(Settings),
        DotEnvSettingsSource(Settings),
        SecretsSettingsSource(Settings),
    )
    found: dict[str, Provenance] = {}
    for source in sources:
        if isinstance(source, SsmSource):
            source.prefix = settings.ssm_prefix  # the prefix as the sources above resolved it
        for name in source():
            found.setdefault(name, _provenance(source, name))
    return {name: found.get(name, Provenance("default")) for name in Settings.model_fields}


def _provenance(source: PydanticBaseSettingsSource, name: str) -> Provenance:
    prefix = Settings.model_config.get("env_prefix", "")
    if isinstance(source, ConfigFileSource):
        return Provenance("file", str(source.path))
    if isinstance(source, SsmSource):
        return Provenance("ssm", source.parameters[name])
    if isinstance(source, DotEnvSettingsSource):  # before EnvSettingsSource: a subclass of it
        return Provenance("dotenv", f"{prefix}{name.upper()}")
    if isinstance(source, EnvSettingsSource):
        return Provenance("env", f"{prefix}{name.upper()}")
    if isinstance(source, SecretsSettingsSource):
        return Provenance("secrets", name)
    return Provenance("argument")


def shown(name: str, value: Any) -> Any:
    """``value`` as JSON, masked if it is a secret: a SecretStr, a value under a secret-looking
    name, or text in which the redactor finds a credential (a URL's password, a token).
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, SecretStr):
        return MASK
    text = str(value) if isinstance(value, Path | str) else json.dumps(value, default=str)
    if secret_key(name) or secret_values({name.upper(): text}):
        return MASK
    return redact(text)


@click.group("config")
def group() -> None:
    """Inspect bcce's configuration."""


@group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(as_json: bool) -> None:
    """Print every setting, its value and where it came from (env, file, ssm, default).

    Precedence: BCCE_* variables, then the config file (BCCE_CONFIG_FILE, ./bcce.yaml or
    ~/.config/bcce/bcce.yaml), then SSM parameters under BCCE_SSM_PREFIX. Secrets are masked.
    """
    settings = settings_for(None)
    found = sources_of(settings)
    path = config_file()
    rows = [
        {
            "name": name,
            "value": shown(name, getattr(settings, name)),
            "source": found[name].source,
            "from": found[name].where,
        }
        for name in Settings.model_fields
    ]
    if as_json:
        document = {"config_file": str(path) if path else None, "settings": rows}
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(f"# config file: {path or 'none'}")
    table = [("setting", "value", "source")] + [
        (str(row["name"]), _text(row["value"]), str(found[str(row["name"])])) for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(2)]
    for setting, value, source in table:
        click.echo(f"{setting:<{widths[0]}}  {value:<{widths[1]}}  {source}".rstrip())


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
