"""Tests for bcce.doctor and ``bcce doctor``: each check alone, the runner, and the CLI.

AWS answers come from a botocore Stubber (STS GetCallerIdentity and the Bedrock listings,
shapes as in the botocore service model) or from moto; nothing reaches the network.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from click.testing import CliRunner, Result

from bcce import aws, doctor
from bcce.cli import cli
from bcce.doctor import Check, Context
from tests.unit.test_models import (
    HAIKU_3,
    SONNET_45,
    US_APPLICATION,
    US_MODELS,
    US_PAGE_1,
    US_PAGE_2,
    availability,
    bedrock,
    stub_listing,
)

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens there
ARN = "arn:aws:iam::123456789012:user/dev"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BCCE_* or AWS settings from the developer's shell; fake AWS keys."""
    for name in list(os.environ):
        if name.startswith(("BCCE_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def sts(identity: dict[str, str] | None = None, error: str | None = None) -> Iterator[Any]:
    client = aws.client("sts", region_name="us-east-1", max_attempts=1)
    stubber = Stubber(client)
    if error:
        stubber.add_client_error(
            "get_caller_identity", service_error_code=error, service_message="invalid token"
        )
    else:
        stubber.add_response("get_caller_identity", identity or {}, {})
    with stubber:
        yield client


@pytest.fixture
def sts_ok() -> Iterator[Any]:
    yield from sts({"UserId": "AIDAEXAMPLE", "Account": "123456789012", "Arn": ARN})


def factory(**clients: Any) -> Any:
    """A Context.make_client returning the given client per service."""
    return lambda service, region: clients[service]


# one check at a time


def test_python_and_packages_are_reported() -> None:
    assert doctor.check_python(Context()).status == "ok"
    packages = doctor.check_packages(Context())
    assert packages.status == "ok"
    assert f"celery {importlib.metadata.version('celery')}" in packages.detail
    assert "claude-agent-sdk" in packages.detail


def test_packages_without_the_agent_sdk_warn_and_without_celery_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.metadata.version
    gone: set[str] = {"claude-agent-sdk"}

    def version(name: str) -> str:
        if name in gone:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    check = doctor.check_packages(Context())
    assert (check.status, check.fix) == ("warn", "pip install 'bcce[agent]'")
    gone.add("celery")
    check = doctor.check_packages(Context())
    assert check.status == "fail" and "missing celery" in check.detail


def test_settings_invalid_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert doctor.check_settings(Context()).detail == "BCCE_* settings valid (embedded mode)"
    monkeypatch.setenv("BCCE_RUN_TTL_SECONDS", "0")
    check = doctor.check_settings(Context())
    assert check.status == "fail"
    assert check.detail.startswith("BCCE_RUN_TTL_SECONDS: ")
    assert check.fix == "fix or unset BCCE_RUN_TTL_SECONDS"


def test_broker_embedded_is_ok_and_unreachable_fails_fast() -> None:
    embedded = doctor.check_broker(Context())
    assert (embedded.status, embedded.detail.split(":")[0]) == ("ok", "embedded mode")
    start = time.monotonic()
    check = doctor.check_broker(Context(broker=UNREACHABLE))
    assert time.monotonic() - start < 3
    assert check.status == "fail" and check.detail.startswith(f"cannot reach {UNREACHABLE}")


def test_broker_answering_shows_round_trip_and_hides_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    def ping(url: str, timeout: float = 2.0) -> tuple[float, str]:
        seen.append(url)
        return 0.0004, "7.2.4"

    monkeypatch.setattr(doctor, "ping_broker", ping)
    check = doctor.check_broker(Context(broker="redis://:s3cret@redis.internal:6379/0"))
    assert check.status == "ok"
    assert (
        check.detail == "redis://:***@redis.internal:6379/0 answered PING in 0.4 ms (Redis 7.2.4)"
    )
    assert seen == ["redis://:s3cret@redis.internal:6379/0"]


class FakeInspect:
    def __init__(self, answer: dict[str, list[dict[str, str]]] | None) -> None:
        self.answer = answer

    def active_queues(self) -> dict[str, list[dict[str, str]]] | None:
        return self.answer


class FakeApp:
    def __init__(self, answer: dict[str, list[dict[str, str]]] | None) -> None:
        self.answer = answer
        self.closed = False
        self.control = self

    def inspect(self, timeout: float) -> FakeInspect:
        assert timeout <= 5
        return FakeInspect(self.answer)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def broker_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "ping_broker", lambda url, timeout=2.0: (0.001, "7.2.4"))


def fake_workers(monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any] | None) -> FakeApp:
    import bcce.celery_app

    app = FakeApp(answer)
    monkeypatch.setattr(bcce.celery_app, "make_app", lambda settings, types: app)
    return app


def test_workers_per_pool_warn_for_pools_without_one(
    monkeypatch: pytest.MonkeyPatch, broker_up: None
) -> None:
    app = fake_workers(
        monkeypatch,
        {
            "policy-1@h": [{"name": "policy"}],
            "agent+command-1@h": [{"name": "agent"}, {"name": "command"}],
        },
    )
    check = doctor.check_workers(Context(broker="redis://localhost:6379/0"))
    assert check.status == "warn"
    assert check.detail.startswith(
        "2 live worker(s); per pool: policy 1, agent 1, command 1, diff 0"
    )
    assert "`bcce worker --pool diff`" in check.fix
    assert app.closed


def test_workers_ok_when_every_pool_has_one(
    monkeypatch: pytest.MonkeyPatch, broker_up: None
) -> None:
    from bcce.steptypes import queues, registry

    fake_workers(monkeypatch, {"all@h": [{"name": q} for q in queues(registry())]})
    assert doctor.check_workers(Context(broker="redis://localhost:6379/0")).status == "ok"


def test_workers_embedded_ok_and_unreachable_broker_fails() -> None:
    assert doctor.check_workers(Context()).status == "ok"
    check = doctor.check_workers(Context(broker=UNREACHABLE))
    assert check.status == "fail" and "does not answer" in check.detail


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "claude"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_claude_from_bcce_claude_bin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BCCE_CLAUDE_BIN", str(script(tmp_path, "echo '9.9.9 (Claude Code)'")))
    check = doctor.check_claude(Context())
    assert check.status == "ok"
    assert (
        check.detail.startswith("9.9.9 (Claude Code) at ") and "(BCCE_CLAUDE_BIN)" in check.detail
    )


def test_claude_failing_or_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BCCE_CLAUDE_BIN", str(script(tmp_path, "echo broken >&2; exit 3")))
    check = doctor.check_claude(Context())
    assert check.status == "fail" and "exit 3: broken" in check.detail
    monkeypatch.setenv("BCCE_CLAUDE_BIN", str(tmp_path / "nope"))
    assert doctor.check_claude(Context()).status == "fail"
    monkeypatch.delenv("BCCE_CLAUDE_BIN")
    monkeypatch.setattr(doctor, "find_claude", lambda: (None, "PATH"))
    check = doctor.check_claude(Context())
    assert check.status == "warn" and "bcce[agent]" in check.fix


def test_claude_defaults_to_the_sdks_bundled_cli() -> None:
    path, source = doctor.find_claude()
    if path is None:
        pytest.skip("this claude-agent-sdk wheel bundles no CLI")
    assert source == "bundled with claude-agent-sdk"
    assert Path(path).parent.name == "_bundled"


def test_git_found_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    if shutil.which("git"):
        check = doctor.check_git(Context())
        assert check.status == "ok" and check.detail.startswith("git version")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    check = doctor.check_git(Context())
    assert (check.status, check.fix) == ("fail", "install git")


def test_aws_region_warns_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    check = doctor.check_aws_region(Context())
    assert check.status == "warn" and "us-east-1" in check.detail
    assert doctor.check_aws_region(Context(region="eu-west-1")).detail == "eu-west-1 (--region)"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert doctor.check_aws_region(Context()).detail == "eu-central-1 (AWS_DEFAULT_REGION)"


def test_aws_credentials_show_the_arn(sts_ok: Any) -> None:
    check = doctor.check_aws_credentials(Context(make_client=factory(sts=sts_ok)))
    assert check == Check("aws-credentials", "ok", f"{ARN} (account 123456789012)")


def test_aws_credentials_rejected_fail() -> None:
    for client in sts(error="InvalidClientTokenId"):
        check = doctor.check_aws_credentials(Context(make_client=factory(sts=client)))
        assert check.status == "fail"
        assert "credentials rejected (InvalidClientTokenId" in check.detail


def test_aws_credentials_through_the_real_factory_with_moto() -> None:
    from moto import mock_aws

    with mock_aws():
        check = doctor.check_aws_credentials(Context())
    assert check.status == "ok" and check.detail.startswith("arn:aws:")


def test_aws_credentials_none_fail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    check = doctor.check_aws_credentials(Context())
    assert check.status == "fail" and "no usable AWS credentials" in check.detail


@pytest.fixture
def listed() -> Iterator[tuple[Any, Stubber]]:
    client, stubber = bedrock("us-east-1")
    stub_listing(stubber, US_MODELS, [US_PAGE_1, US_PAGE_2], US_APPLICATION)
    with stubber:
        yield client, stubber


def model_check(client: Any, model: str | None) -> Check:
    return doctor.check_model(
        Context(model=model, region="us-east-1", make_client=factory(bedrock=client))
    )


def test_model_not_given_is_not_checked() -> None:
    assert doctor.check_model(Context()).detail == "no --model given: not checked"


def test_model_profile_with_access_is_ok(listed: tuple[Any, Stubber]) -> None:
    client, stubber = listed
    stubber.add_response(
        "get_foundation_model_availability", availability(SONNET_45), {"modelId": SONNET_45}
    )
    check = model_check(client, f"us.{SONNET_45}")
    assert check.status == "ok", check
    assert "inference-profile, ACTIVE" in check.detail and "access granted" in check.detail


def test_model_bare_id_needing_a_profile_fails_naming_it(listed: tuple[Any, Stubber]) -> None:
    client, _ = listed
    check = model_check(client, SONNET_45)
    assert check.status == "fail"
    assert "cannot be invoked by its id (INFERENCE_PROFILE)" in check.detail
    assert check.fix == f"use the inference profile us.{SONNET_45}"


def test_model_unknown_or_without_access_fails(listed: tuple[Any, Stubber]) -> None:
    client, stubber = listed
    check = model_check(client, "anthropic.claude-nope-v1:0")
    assert check.status == "fail" and "bcce models list" in check.fix
    stub_listing(stubber, US_MODELS, [US_PAGE_1, US_PAGE_2], US_APPLICATION)
    stubber.add_response(
        "get_foundation_model_availability",
        availability(HAIKU_3, authorized=False),
        {"modelId": HAIKU_3},
    )
    check = model_check(client, HAIKU_3)
    assert check.status == "fail" and "no model access" in check.detail


def test_model_listing_denied_fails_with_the_fix() -> None:
    client, stubber = bedrock("us-east-1")
    stubber.add_client_error(
        "list_foundation_models",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: bedrock:ListFoundationModels",
    )
    with stubber:
        check = model_check(client, SONNET_45)
    assert check.status == "fail" and "access denied" in check.detail
    assert check.fix.startswith("allow bedrock:ListFoundationModels")


# the runner


def ok(ctx: Context) -> Check:
    return Check("ok", "ok", "fine")


def warned(ctx: Context) -> Check:
    return Check("warned", "warn", "hmm", "look")


def failed(ctx: Context) -> Check:
    return Check("failed", "fail", "broken", "mend it")


def check_crashes(ctx: Context) -> Check:
    raise RuntimeError("boom")


def check_hangs(ctx: Context) -> Check:
    time.sleep(5)
    return Check("hangs", "ok", "late")


def test_run_keeps_order_and_reports_ok_unless_a_check_failed() -> None:
    checks = doctor.run(Context(), [ok, warned])
    assert [c.name for c in checks] == ["ok", "warned"]
    assert doctor.report(checks)["ok"] is True
    report = doctor.report(doctor.run(Context(), [ok, failed]))
    assert report["ok"] is False
    assert report["checks"][1] == {
        "name": "failed",
        "status": "fail",
        "detail": "broken",
        "fix": "mend it",
    }


def test_run_turns_crashes_and_hangs_into_failures_without_waiting() -> None:
    start = time.monotonic()
    crashed, hung = doctor.run(Context(), [check_crashes, check_hangs], deadline=0.3)
    assert time.monotonic() - start < 2
    assert (crashed.name, crashed.status) == ("crashes", "fail")
    assert "RuntimeError: boom" in crashed.detail
    assert (hung.name, hung.status, hung.detail) == ("hangs", "fail", "no answer within 0.3s")


def test_run_runs_checks_concurrently() -> None:
    def slow(ctx: Context) -> Check:
        time.sleep(0.4)
        return Check("slow", "ok", "")

    start = time.monotonic()
    assert len(doctor.run(Context(), [slow] * 5)) == 5
    assert time.monotonic() - start < 1.5


def test_every_check_reports_under_its_function_name(
    monkeypatch: pytest.MonkeyPatch, broker_up: None, sts_ok: Any
) -> None:
    client, stubber = bedrock("us-east-1")
    stub_listing(stubber, US_MODELS, [US_PAGE_1, US_PAGE_2], US_APPLICATION)
    stubber.add_response(
        "get_foundation_model_availability", availability(HAIKU_3), {"modelId": HAIKU_3}
    )
    fake_workers(monkeypatch, {})
    ctx = Context(
        broker="redis://localhost:6379/0",
        model=HAIKU_3,
        make_client=factory(sts=sts_ok, bedrock=client),
    )
    with stubber:
        for check in doctor.CHECKS:
            assert check(ctx).name == doctor.name_of(check)


# the CLI


def bcce(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="bcce", env={"COLUMNS": "200"})


def test_cli_all_passing_exits_0_with_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "CHECKS", (ok, warned))
    result = bcce("doctor")
    assert result.exit_code == 0, result.output
    assert "warned" in result.output and "look" in result.output
    assert "1 ok, 1 warn, 0 fail" in result.output


def test_cli_a_failing_check_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "CHECKS", (ok, failed))
    result = bcce("doctor", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False
    assert [c["status"] for c in data["checks"]] == ["ok", "fail"]
    assert set(data["checks"][0]) == {"name", "status", "detail", "fix"}


def test_cli_passes_options_to_the_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Context] = []

    def record(ctx: Context) -> Check:
        seen.append(ctx)
        return Check("record", "ok", "")

    monkeypatch.setattr(doctor, "CHECKS", (record,))
    result = bcce("doctor", "--broker", UNREACHABLE, "--model", "m", "--region", "eu-west-1")
    assert result.exit_code == 0, result.output
    assert (seen[0].broker, seen[0].model, seen[0].region) == (UNREACHABLE, "m", "eu-west-1")


def test_doctor_with_an_unreachable_broker_answers_within_seconds(tmp_path: Path) -> None:
    """The whole command, as a user runs it: no check may hang, and the broker fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BCCE_", "AWS_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL="http://127.0.0.1:1",  # every AWS endpoint refuses at once
        BCCE_CLAUDE_BIN=str(script(tmp_path, "echo '9.9.9 (Claude Code)'")),
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bcce", "doctor", "--json", "--broker", UNREACHABLE],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    assert took < 10, f"doctor took {took:.1f}s"
    data = json.loads(proc.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert data["ok"] is False
    assert checks["broker"]["status"] == "fail"
    assert checks["broker"]["detail"].startswith(f"cannot reach {UNREACHABLE}")
    assert checks["workers"]["status"] == "fail"
    assert checks["aws-credentials"]["status"] == "fail"
    assert "endpoint unreachable" in checks["aws-credentials"]["detail"]
    assert checks["claude"]["status"] == "ok"
