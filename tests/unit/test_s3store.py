"""Tests for the S3 artifact store, against moto's S3 and KMS (``mock_aws``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bcce.artifacts import LocalArtifactStore, store_for
from bcce.errors import UsageError
from bcce.records import RunRecord, RunStatus
from bcce.s3store import S3ArtifactStore, parse
from bcce.settings import Settings

BUCKET = "bcce-artifacts"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


def run_record(tmp_path: Path, url: str | None) -> RunRecord:
    return RunRecord(
        id="r1",
        workflow="w",
        status=RunStatus.RUNNING,
        created_at=0,
        workspace=str(tmp_path),
        run_dir=str(tmp_path / "submitter" / "r1"),
        step_ids=["a"],
        artifacts_url=url,
    )


def test_urls_name_a_bucket_and_a_prefix() -> None:
    assert parse("s3://b/runs/x/") == ("b", "runs/x")
    assert parse("s3://b") == ("b", "")
    with pytest.raises(UsageError, match="names no bucket"):
        parse("s3:///runs")


def test_a_step_pushed_on_one_host_is_pulled_on_another(aws: Any, tmp_path: Path) -> None:
    kms = boto3.client("kms", region_name="us-east-1")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    settings = Settings(artifacts_kms_key_id=key_id)
    url = f"s3://{BUCKET}/runs/r1"

    host_a = S3ArtifactStore(url, tmp_path / "a", settings)
    step = host_a.step_dir("fix")
    (step / "changes.diff").write_bytes(b"diff --git a/x b/x\n")
    (step / "transcript.jsonl").write_bytes(b"{}\n" * 100_000)  # large: streamed
    (step / ".agent-request.json.tmp").write_text("scratch")  # hidden files stay local
    host_a.write_snapshot({"version": 1})
    host_a.push("fix")

    head = aws.head_object(Bucket=BUCKET, Key="runs/r1/fix/changes.diff")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith(key_id)
    assert aws.head_object(Bucket=BUCKET, Key="runs/r1/workflow.json")["ContentLength"] > 0
    keys = {o["Key"] for o in aws.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert "runs/r1/fix/.agent-request.json.tmp" not in keys

    host_b = S3ArtifactStore(url, tmp_path / "b", Settings())
    host_b.pull()
    assert (tmp_path / "b" / "fix" / "changes.diff").read_bytes() == b"diff --git a/x b/x\n"
    assert (tmp_path / "b" / "fix" / "transcript.jsonl").stat().st_size == 300_000
    assert host_b.read_snapshot() == {"version": 1}
    assert host_b.listing("fix")["changes.diff"] == f"s3://{BUCKET}/runs/r1/fix/changes.diff"


def test_keys_that_would_leave_the_folder_are_never_written(aws: Any, tmp_path: Path) -> None:
    for key in ("runs/r1/../../escape.txt", "runs/r1/a/b/c/deep.txt", "runs/r1//x"):
        aws.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    aws.put_object(Bucket=BUCKET, Key="runs/r1/a/output.txt", Body=b"ok\n")
    store = S3ArtifactStore(f"s3://{BUCKET}/runs/r1", tmp_path / "cache" / "r1", Settings())
    store.pull()
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["cache/r1/a/output.txt"]


def test_an_unreachable_store_is_an_infrastructure_error(aws: Any, tmp_path: Path) -> None:
    store = S3ArtifactStore("s3://no-such-bucket/r1", tmp_path / "x", Settings())
    (store.step_dir("a") / "output.txt").write_text("x")
    with pytest.raises(Exception, match=r"cannot upload artifacts at s3://no-such-bucket/r1"):
        store.push("a")
    with pytest.raises(Exception, match=r"cannot list s3://no-such-bucket/r1"):
        store.pull()


def test_the_store_is_chosen_by_the_runs_url(aws: Any, tmp_path: Path) -> None:
    settings = Settings(workspaces_dir=tmp_path / "host" / "workspaces")
    assert type(store_for(run_record(tmp_path, None), settings)) is LocalArtifactStore
    remote = run_record(tmp_path, f"s3://{BUCKET}/runs/r1")
    worker = store_for(remote, settings, submitter=False)
    assert isinstance(worker, S3ArtifactStore)
    assert worker.run_dir == tmp_path / "host" / "artifacts" / "r1"
    (tmp_path / "submitter" / "r1").mkdir(parents=True)
    assert store_for(remote, settings).run_dir == tmp_path / "submitter" / "r1"
    with pytest.raises(UsageError, match="no artifact store for gs:// URLs"):
        store_for(run_record(tmp_path, "gs://bucket/r1"), settings)
