"""Tests for where settings come from (environment, config file, SSM) and `bcce config show`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from moto import mock_aws
from pydantic_settings import SettingsError

from bcce import configsources as settings_module
from bcce.cli import cli
from bcce.errors import InfrastructureError
from bcce.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/bcce/prod"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No BCCE_* variables, an empty working directory and home, no SSM read yet."""
    for name in list(os.environ):
        if name.startswith("BCCE_"):
            monkeypatch.delenv(name)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    settings_module._ssm_parameters.cache_clear()
    yield
    settings_module._ssm_parameters.cache_clear()


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's SSM, with parameters under PREFIX and one elsewhere."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        client = boto3.client("ssm", region_name="us-east-1")
        put = client.put_parameter
        put(Name=f"{PREFIX}/broker_url", Value="redis://:ssm-password@ssm:6379/0", Type="String")
        put(Name=f"{PREFIX}/limits/run_ttl_seconds", Value="3600", Type="String")
        put(Name=f"{PREFIX}/webhook_secret", Value="whsec-0123456789", Type="SecureString")
        put(Name="/other/app/isolate", Value="false", Type="String")
        yield client


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path.resolve()


def bcce(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="bcce")


# the config file


def test_the_config_file_sets_what_the_environment_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(Path("bcce.yaml"), "broker_url: redis://file:6379/0\nrun_ttl_seconds: 60\n")
    monkeypatch.setenv("BCCE_RUN_TTL_SECONDS", "90")
    settings = Settings()
    assert settings.broker_url == "redis://file:6379/0"
    assert settings.run_ttl_seconds == 90
    assert Settings(run_ttl_seconds=120).run_ttl_seconds == 120  # a CLI flag beats both


def test_the_config_file_is_bcce_config_file_else_the_working_directory_else_the_user_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert Settings().broker_url is None
    write(tmp_path / "home" / ".config" / "bcce" / "bcce.yaml", "broker_url: redis://home/0\n")
    assert Settings().broker_url == "redis://home/0"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    write(tmp_path / "xdg" / "bcce" / "bcce.yaml", "broker_url: redis://xdg/0\n")
    assert Settings().broker_url == "redis://xdg/0"
    write(Path("bcce.yaml"), "broker_url: redis://cwd/0\n")
    assert Settings().broker_url == "redis://cwd/0"
    explicit = write(tmp_path / "elsewhere.yaml", "broker_url: redis://explicit/0\n")
    monkeypatch.setenv("BCCE_CONFIG_FILE", str(explicit))
    assert Settings().broker_url == "redis://explicit/0"


def test_an_empty_config_file_sets_nothing() -> None:
    write(Path("bcce.yaml"), "# nothing yet\n")
    assert Settings() == Settings.model_construct()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("brokr_url: redis://x\n", "unknown setting 'brokr_url' (did you mean 'broker_url'?)"),
        ("BCCE_BROKER_URL: redis://x\n", "unknown setting 'BCCE_BROKER_URL'"),
        ("run_ttl_seconds: -1\n", "run_ttl_seconds: Input should be greater than 0"),
        ("broker_url: [a, b]\n", "broker_url: Input should be a valid string"),
        ("- broker_url\n", "expected a mapping of setting names to values"),
        ("broker_url: [\n", "not valid YAML"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file_and_the_key_and_exits_2(
    content: str, message: str
) -> None:
    path = write(Path("bcce.yaml"), content)
    with pytest.raises(SettingsError, match=str(path)):
        Settings()
    result = bcce("config", "show")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("bcce: ")
    assert f"{path}" in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_a_missing_bcce_config_file_is_an_error_not_silently_no_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write(Path("bcce.yaml"), "broker_url: redis://cwd/0\n")
    monkeypatch.setenv("BCCE_CONFIG_FILE", "/no/such/bcce.yaml")
    result = bcce("config", "show")
    assert result.exit_code == 2
    assert "BCCE_CONFIG_FILE=/no/such/bcce.yaml: no such file" in result.stderr


# SSM Parameter Store


def test_ssm_parameters_under_the_prefix_set_what_env_and_file_do_not(
    ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCCE_SSM_PREFIX", PREFIX)
    settings = Settings()
    assert settings.broker_url == "redis://:ssm-password@ssm:6379/0"
    assert settings.run_ttl_seconds == 3600  # recursive: /bcce/prod/limits/run_ttl_seconds
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == "whsec-0123456789"  # decrypted
    assert settings.isolate is True  # /other/app/isolate is not under the prefix

    write(Path("bcce.yaml"), "broker_url: redis://file/0\n")
    monkeypatch.setenv("BCCE_RUN_TTL_SECONDS", "7")
    settings = Settings()
    assert (settings.broker_url, settings.run_ttl_seconds) == ("redis://file/0", 7)


def test_the_ssm_prefix_may_come_from_the_config_file(ssm: Any) -> None:
    write(Path("bcce.yaml"), f"ssm_prefix: {PREFIX}\nstate_url: redis://state/1\n")
    settings = Settings()
    assert settings.broker_url == "redis://:ssm-password@ssm:6379/0"
    assert settings.state_url == "redis://state/1"


def test_an_unknown_or_invalid_ssm_parameter_is_an_error_naming_it(
    ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCCE_SSM_PREFIX", PREFIX)
    ssm.put_parameter(Name=f"{PREFIX}/brokerurl", Value="redis://x", Type="String")
    with pytest.raises(SettingsError, match=f"SSM parameter {PREFIX}/brokerurl: unknown setting"):
        Settings()
    ssm.delete_parameter(Name=f"{PREFIX}/brokerurl")
    ssm.put_parameter(Name=f"{PREFIX}/metrics_port", Value="http", Type="String")
    settings_module._ssm_parameters.cache_clear()
    result = bcce("config", "show")
    assert result.exit_code == 2
    assert f"SSM parameter {PREFIX}/metrics_port: metrics_port: Input should be" in result.stderr


def test_ssm_is_read_once_a_process(ssm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BCCE_SSM_PREFIX", PREFIX)
    assert Settings().run_ttl_seconds == 3600
    ssm.put_parameter(
        Name=f"{PREFIX}/limits/run_ttl_seconds", Value="5", Type="String", Overwrite=True
    )
    assert Settings().run_ttl_seconds == 3600  # a worker's settings do not change under it


def test_unreachable_ssm_is_an_infrastructure_error_exit_7(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:1",  # nothing listens
        "BCCE_SSM_PREFIX": PREFIX,
    }.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InfrastructureError, match=f"cannot read SSM parameters under {PREFIX}"):
        Settings()
    result = bcce("config", "show")
    assert result.exit_code == 7
    assert result.stderr.startswith(f"bcce: cannot read SSM parameters under {PREFIX}")


def test_without_an_ssm_prefix_settings_make_no_aws_call_and_import_no_boto3() -> None:
    code = (
        "import sys; from bcce.settings import Settings; Settings(); "
        "import bcce.cli; from click.testing import CliRunner; "
        "r = CliRunner().invoke(bcce.cli.cli, ['config', 'show']); assert r.exit_code == 0; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BCCE_", "AWS_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# bcce config show


def test_config_show_names_where_each_setting_came_from(
    ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(Path("bcce.yaml"), f"ssm_prefix: {PREFIX}\nstate_url: redis://state/1\n")
    monkeypatch.setenv("BCCE_RUN_TTL_SECONDS", "77")
    result = bcce("config", "show", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config_file"] == str(path)
    rows = {row["name"]: row for row in document["settings"]}
    assert set(rows) == set(Settings.model_fields)
    assert rows["run_ttl_seconds"] == {
        "name": "run_ttl_seconds",
        "value": 77,
        "source": "env",
        "from": "BCCE_RUN_TTL_SECONDS",
    }
    assert (rows["state_url"]["source"], rows["state_url"]["from"]) == ("file", str(path))
    assert (rows["ssm_prefix"]["source"], rows["ssm_prefix"]["value"]) == ("file", PREFIX)
    assert (rows["broker_url"]["source"], rows["broker_url"]["from"]) == (
        "ssm",
        f"{PREFIX}/broker_url",
    )
    assert rows["max_step_timeout_seconds"] == {
        "name": "max_step_timeout_seconds",
        "value": 21600,
        "source": "default",
        "from": None,
    }

    text = bcce("config", "show")
    assert text.exit_code == 0, text.output
    lines = {line.split()[0]: line for line in text.stdout.splitlines()}
    assert lines["#"] == f"# config file: {path}"
    assert lines["run_ttl_seconds"].split()[1:] == ["77", "env", "BCCE_RUN_TTL_SECONDS"]
    assert lines["broker_url"].split()[-2:] == ["ssm", f"{PREFIX}/broker_url"]
    assert lines["isolate"].split() == ["isolate", "true", "default"]
    assert lines["metrics_port"].split() == ["metrics_port", "-", "default"]


def test_config_show_masks_secrets_wherever_they_came_from(
    ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        Path("bcce.yaml"),
        "event_sinks: https://hooks.example/in?t=ghp_0123456789abcdefghijklmnopqrstuvwxyz\n",
    )
    monkeypatch.setenv("BCCE_SSM_PREFIX", PREFIX)
    monkeypatch.setenv("BCCE_STATE_URL", "rediss://ops:env-password@state:6380/1")
    for args in (("config", "show"), ("config", "show", "--json")):
        result = bcce(*args)
        assert result.exit_code == 0, result.output
        for secret in ("ssm-password", "env-password", "whsec-0123456789", "ghp_0123456789"):
            assert secret not in result.stdout, (args, secret)
    rows = {row["name"]: row for row in json.loads(result.stdout)["settings"]}
    assert rows["webhook_secret"]["value"] == "[REDACTED]"  # a SecretStr, from SecureString
    assert rows["state_url"]["value"] == "rediss://ops:[REDACTED:url-password]@state:6380/1"
    assert rows["broker_url"]["value"] == "redis://:[REDACTED:url-password]@ssm:6379/0"
    assert rows["event_sinks"]["value"].startswith("https://hooks.example/in?t=[REDACTED")


def test_a_value_is_masked_whole_when_its_name_looks_secret() -> None:
    from bcce.cli.config import shown

    assert shown("webhook_secret", "plain-looking-value") == "[REDACTED]"
    assert shown("api_token", "plain-looking-value") == "[REDACTED]"
    assert shown("gate_private_key_file", "/keys/gate.key") == "/keys/gate.key"
    assert shown("run_ttl_seconds", 60) == 60
    assert shown("claude_bin", None) is None
