"""Artifacts in Amazon S3: ``s3://bucket/prefix/<run_id>/<step_id>/<name>``.

Steps write into a local folder as always; this store uploads a step's files when it ends
(``upload_file``: streamed, multipart for large ones) and fills another host's folder before
its step (``download_file``, only what it lacks). With ``BCCE_ARTIFACTS_KMS_KEY_ID`` every
object is written with SSE-KMS under that key; otherwise the bucket's default encryption
applies. Nothing is ever held whole in memory or sent through Celery.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bcce import aws
from bcce.artifacts import LocalArtifactStore
from bcce.errors import InfrastructureError, UsageError
from bcce.settings import Settings


def parse(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    if not url.startswith("s3://"):
        raise UsageError(f"{url!r} is not an s3:// URL")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise UsageError(f"{url!r} names no bucket: use s3://BUCKET/PREFIX")
    return bucket, prefix.strip("/")


class S3ArtifactStore(LocalArtifactStore):
    """One run's artifacts under an S3 prefix, with run_dir as this host's copy."""

    def __init__(self, url: str, run_dir: Path, settings: Settings, client: Any = None) -> None:
        super().__init__(run_dir)
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse(self.url)
        self.client = client or aws.client("s3", read_timeout=120, connect_timeout=10)
        self.extra: dict[str, str] = {}
        if settings.artifacts_kms_key_id:
            self.extra = {
                "ServerSideEncryption": "aws:kms",
                "SSEKMSKeyId": settings.artifacts_kms_key_id,
            }

    def key(self, relative: str) -> str:
        """The object key of a path relative to the run's folder."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def location(self, step_id: str, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(f'{step_id}/{name}')}"

    def push(self, step_id: str | None = None) -> None:
        folder = self.run_dir / step_id if step_id else self.run_dir
        prefix = f"{step_id}/" if step_id else ""
        try:
            with os.scandir(folder) as entries:
                files = [e for e in entries if e.is_file() and not e.name.startswith(".")]
        except FileNotFoundError:
            return
        for entry in files:
            self._call(
                "upload",
                self.client.upload_file,
                entry.path,
                self.bucket,
                self.key(prefix + entry.name),
                ExtraArgs=self.extra or None,
            )

    def pull(self) -> None:
        root = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root
        )
        try:
            objects = [o for page in pages for o in page.get("Contents", ())]
        except Exception as exc:
            raise InfrastructureError(f"cannot list {self.url}: {exc}") from None
        for obj in objects:
            relative = obj["Key"][len(root) :]
            parts = relative.split("/")
            if not relative or ".." in parts or "" in parts or len(parts) > 2:
                continue  # not an artifact bcce wrote: never a path outside the folder
            local = self.run_dir / relative
            if local.is_file() and local.stat().st_size == obj["Size"]:
                continue
            local.parent.mkdir(parents=True, exist_ok=True)
            scratch = local.with_name(f".{local.name}.part")
            self._call("download", self.client.download_file, self.bucket, obj["Key"], str(scratch))
            os.replace(scratch, local)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **{k: v for k, v in kwargs.items() if v is not None})
        except Exception as exc:  # botocore and S3 transfer errors
            raise InfrastructureError(f"cannot {what} artifacts at {self.url}: {exc}") from None
