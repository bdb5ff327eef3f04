"""Where settings come from besides the environment: the config file and AWS SSM.

pydantic-settings sources; their order is in ``Settings.settings_customise_sources``.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsError,
    YamlConfigSettingsSource,
)

from bcce.errors import InfrastructureError

CONFIG_FILE_ENV = "BCCE_CONFIG_FILE"
CONFIG_FILE_NAME = "bcce.yaml"
# Seconds: settings are read at start-up, where a missing network should fail fast.
SSM_TIMEOUT = 5


def config_file() -> Path | None:
    """The config file: ``$BCCE_CONFIG_FILE``, else ``./bcce.yaml``, else
    ``$XDG_CONFIG_HOME/bcce/bcce.yaml`` (``~/.config/bcce/bcce.yaml``), the first that exists.

    None when there is none; a ``BCCE_CONFIG_FILE`` that does not exist is an error.
    """
    explicit = os.environ.get(CONFIG_FILE_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise SettingsError(f"{CONFIG_FILE_ENV}={explicit}: no such file")
        return path
    # expanduser, not Path.home(): no error for a user without a home (some containers).
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    for path in (Path.cwd() / CONFIG_FILE_NAME, Path(config_home) / "bcce" / CONFIG_FILE_NAME):
        if path.is_file():
            return path
    return None


@functools.cache
def _adapter(settings_cls: type[BaseSettings], name: str) -> TypeAdapter[Any]:
    """A validator of one field's values, with the field's constraints."""
    field: FieldInfo = settings_cls.model_fields[name]
    # Built at run time from the field: a type mypy cannot see, hence Any.
    annotated: Any = cast(Any, Annotated)[field.annotation, field]
    return TypeAdapter(annotated)


def _checked(
    settings_cls: type[BaseSettings], values: Mapping[Any, Any], where: str
) -> dict[str, Any]:
    """``values`` if each key is a setting name and each value valid for it; else raise,
    naming ``where``, so that the message points at the file or parameter to fix.
    """
    fields = settings_cls.model_fields
    for key, value in values.items():
        name = str(key)
        if name not in fields:
            close = difflib.get_close_matches(name.lower(), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SettingsError(f"{where}: unknown setting {name!r}{hint}")
        try:
            _adapter(settings_cls, name).validate_python(value)
        except ValidationError as exc:
            raise SettingsError(f"{where}: {name}: {exc.errors()[0]['msg']}") from None
    return {str(key): value for key, value in values.items()}


class ConfigFileSource(YamlConfigSettingsSource):
    """Settings from the config file: a YAML mapping of setting names to values."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        self.path = path
        self.settings_cls = settings_cls  # the base reads the file before it sets this
        super().__init__(settings_cls, yaml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        import yaml

        try:
            data = super()._read_file(file_path)
        except OSError as exc:
            raise SettingsError(f"{file_path}: cannot read: {exc.strerror or exc}") from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            where = f"{file_path}:{mark.line + 1}:{mark.column + 1}" if mark else str(file_path)
            raise SettingsError(f"{where}: not valid YAML: {exc.problem}") from None
        except yaml.YAMLError as exc:
            raise SettingsError(f"{file_path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{file_path}: expected a mapping of setting names to values")
        return _checked(self.settings_cls, data, str(file_path))


class SsmSource(PydanticBaseSettingsSource):
    """Settings from the SSM parameters under ``ssm_prefix``, as set by the sources before."""

    def __init__(self, settings_cls: type[BaseSettings], prefix: str | None = None) -> None:
        super().__init__(settings_cls)
        self.prefix = prefix
        self.parameters: dict[str, str] = {}
        """Setting name -> the parameter that set it, once called."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` reads every parameter at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        prefix = self.prefix or self.current_state.get("ssm_prefix")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            return {}  # unset, or invalid: the field's own validation reports that
        values: dict[str, Any] = {}
        for parameter, value in ssm_parameters(prefix).items():
            name = parameter.rsplit("/", 1)[-1]
            where = f"SSM parameter {parameter}"
            if name == "ssm_prefix":
                raise SettingsError(f"{where}: ssm_prefix cannot come from SSM")
            if name in self.parameters:
                raise SettingsError(f"{where}: {name} is also set by {self.parameters[name]}")
            values.update(_checked(self.settings_cls, {name: value}, where))
            self.parameters[name] = parameter
        return values


def ssm_parameters(prefix: str) -> dict[str, str]:
    """Name -> value of every parameter under ``prefix`` (recursive, decrypted).

    Read once a process (settings are made often; a worker's do not change while it runs).
    """
    from bcce.aws import region

    return dict(_ssm_parameters(prefix, region()))


@functools.cache
def _ssm_parameters(prefix: str, region_name: str) -> tuple[tuple[str, str], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    from bcce import aws

    try:
        client = aws.client(
            "ssm",
            region_name=region_name,
            connect_timeout=SSM_TIMEOUT,
            read_timeout=SSM_TIMEOUT,
            max_attempts=2,
        )
        pages = client.get_paginator("get_parameters_by_path").paginate(
            Path=prefix, Recursive=True, WithDecryption=True
        )
        return tuple((p["Name"], p["Value"]) for page in pages for p in page["Parameters"])
    except (BotoCoreError, ClientError) as exc:
        raise InfrastructureError(
            f"cannot read SSM parameters under {prefix} ({region_name}): {exc}"
        ) from None
