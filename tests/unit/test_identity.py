"""Tests for bcce.identity: the AWS caller where credentials exist, else the OS user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from bcce import identity, policy


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in (*identity._AWS_HINTS, "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws here
    identity.current.cache_clear()
    yield
    identity.current.cache_clear()


def test_without_aws_credentials_it_is_the_os_user_and_no_aws_call_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(identity, "_caller_arn", lambda: pytest.fail("called STS"))
    found = identity.current()
    assert found.source == "os" and found.principal == found.os_user and "@" in found.principal


def test_with_credentials_it_is_the_sts_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with mock_aws():
        found = identity.current()
    assert found.source == "aws" and found.principal.startswith("arn:aws:")
    monkeypatch.setenv("BCCE_IDENTITY", "os")
    identity.current.cache_clear()
    assert identity.current().source == "os"


def test_an_identity_center_session_shows_the_person() -> None:
    arn = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Dev_ab12/alice@example.com"
    assert identity.Identity(arn, "aws", "x@y").person == "alice@example.com"


def test_unreachable_sts_falls_back_to_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nowhere")
    monkeypatch.setattr(identity, "_caller_arn", lambda: None)
    assert identity.current().source == "os"


def test_the_org_policy_names_who_may_approve() -> None:
    eff = policy.Effective(
        60,
        None,
        None,
        None,
        None,
        approvers=("arn:aws:sts::*:assumed-role/AWSReservedSSO_Lead*/*",),
    )
    lead = "arn:aws:sts::1:assumed-role/AWSReservedSSO_Lead_x/bob@example.com"
    dev = "arn:aws:sts::1:assumed-role/AWSReservedSSO_Dev_x/eve@example.com"
    assert policy.approver_denial(eff, lead, dev) is None
    assert "not among the approvers" in (policy.approver_denial(eff, dev, lead) or "")
    own = policy.Effective(60, None, None, None, None, self_approval=False)
    assert "forbids approving one's own" in (policy.approver_denial(own, dev, dev) or "")
    assert policy.approver_denial(own, lead, dev) is None
