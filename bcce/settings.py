"""The one settings object: every knob, its ``BCCE_`` environment variable and its default.

Each setting comes from the first of these that sets it (pydantic-settings sources):

1. CLI flags, passed as arguments (``Settings(broker_url=...)``);
2. ``BCCE_*`` environment variables;
3. the config file (:func:`config_file`), a YAML mapping of setting names without the
   prefix (``broker_url: redis://...``); an unknown name is an error;
4. AWS SSM Parameter Store, only when ``ssm_prefix`` is set by 1-3: every parameter under
   that path (recursively, SecureStrings decrypted) whose last segment is a setting name;
5. the default next to the field.

A bad file or parameter raises :class:`SettingsError` (a ValueError, like an invalid
variable) naming it; SSM that cannot be read raises
:class:`~bcce.errors.InfrastructureError`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

EMBEDDED_STATE_URL = "memory://"


class Settings(BaseSettings):
    """bcce configuration: CLI flags, then ``BCCE_*`` variables, the config file and SSM."""

    model_config = SettingsConfigDict(env_prefix="BCCE_", extra="ignore", frozen=True)

    ssm_prefix: str | None = Field(
        default=None,
        pattern=r"^/",
        description=(
            "SSM Parameter Store path (e.g. /bcce/prod) whose parameters, named by their "
            "last segment, set the settings nothing else sets; unset: no AWS calls."
        ),
    )
    broker_url: str | None = Field(
        default=None,
        description="redis:// or rediss:// URL of the broker; unset means embedded mode.",
    )
    result_backend: str | None = Field(
        default=None, description="Celery result backend; defaults to the broker URL."
    )
    state_url: str | None = Field(
        default=None,
        description="Redis URL of the run store; defaults to the broker URL (memory:// embedded).",
    )
    runs_dir: Path = Field(
        default=Path(".bcce_runs"),
        description="Where run artifacts go, relative to the workspace unless absolute.",
    )
    run_ttl_seconds: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long finished runs stay in Redis."
    )
    max_step_timeout_seconds: int = Field(
        default=6 * 3600, gt=0, description="The longest a step may be allowed to run."
    )
    default_step_timeout_seconds: int = Field(
        default=1800, gt=0, description="A step's timeout when its policy sets none."
    )
    output_cap_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Per stream cap on the stdout/stderr kept."
    )
    max_workflow_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest workflow file accepted."
    )
    worker_check_timeout: float = Field(
        default=1.0, gt=0, description="Seconds to wait for workers to answer before a run."
    )
    gate_private_key_file: Path | None = Field(
        default=None, description="Ed25519 key the policy pool signs grants with (PEM)."
    )
    gate_public_keys: str | None = Field(
        default=None,
        description="Comma-separated PEM files of public keys whose grants steps accept.",
    )
    gate_grant_ttl_seconds: int = Field(
        default=24 * 3600, gt=0, description="How long a grant may wait in a queue before use."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of a worker's Prometheus /metrics (unset: no metrics server).",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="prometheus_client multiprocess directory (default: a fresh temp dir).",
    )
    stall_check_seconds: float = Field(
        default=30.0,
        gt=0,
        description="While waiting, how long without news before checking workers are alive.",
    )
    claude_bin: Path | None = Field(
        default=None,
        description="The Claude Code CLI agent steps run (default: the one the SDK bundles).",
    )
    workspaces_dir: Path | None = Field(
        default=None,
        description=(
            "Where workers keep the copies of runs' repositories their steps work in "
            "(default: $XDG_CACHE_HOME/bcce/workspaces, else ~/.cache/bcce/workspaces)."
        ),
    )
    artifacts_url: str | None = Field(
        default=None,
        description=(
            "Remote artifact store for new runs, e.g. s3://bucket/prefix (each run under "
            "<prefix>/<run_id>/); unset: the run's folder only."
        ),
    )
    artifacts_kms_key_id: str | None = Field(
        default=None, description="KMS key for SSE-KMS encryption of artifacts put in S3."
    )
    isolate: bool = Field(
        default=True,
        description=(
            "Run the steps of a run started in a git repository in a copy of it, so only "
            "apply_diff changes the working tree; false: steps work in the tree itself."
        ),
    )
    reconcile_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often a policy-pool worker looks for orphaned runs (0: never).",
    )
    reconcile_after_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a live run may go without news and without any message "
        "queued or held for it before the reconciler re-enqueues its step.",
    )
    policy_file: Path | None = Field(
        default=None,
        description=(
            "The organisation policy (YAML): what workflows may do at most; unset: only "
            "each step's own policy and the worker's limits apply."
        ),
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="Ed25519 key (PEM) audit records are signed with, on every bcce host.",
    )
    audit_public_keys: str | None = Field(
        default=None,
        description="Comma-separated PEM public keys `bcce audit verify` trusts.",
    )
    step_cpu_seconds: int | None = Field(
        default=None, gt=0, description="CPU seconds a cmd step's processes may use each."
    )
    step_memory_mb: int | None = Field(
        default=None, gt=0, description="Address space of each of a cmd step's processes."
    )
    step_file_size_mb: int | None = Field(
        default=4096, gt=0, description="Largest file a cmd step may write."
    )
    step_open_files: int | None = Field(
        default=4096, gt=0, description="Open files each of a cmd step's processes may hold."
    )
    step_processes: int | None = Field(
        default=None,
        gt=0,
        description="Processes of the worker's user a cmd step may bring to (RLIMIT_NPROC).",
    )
    wait_poll_seconds: float = Field(
        default=1.0, gt=0, description="Longest pause between progress reads while waiting."
    )
    event_sinks: str | None = Field(
        default=None,
        description=(
            "Comma-separated URLs run events also go to: https://host/path (signed webhook), "
            "eventbridge://bus, cloudwatch://Namespace, plugins' schemes (docs/events.md); "
            "unset: the run's Redis stream only."
        ),
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key webhook sinks sign events with; required by one.",
    )
    event_sink_queue_size: int = Field(
        default=1000,
        gt=0,
        description="Events a process holds back per sink before it drops the oldest.",
    )
    event_sink_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connect and read timeout of each delivery to a sink."
    )

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the run executes in this process."""
        return not self.broker_url

    @property
    def effective_state_url(self) -> str:
        """The run store's URL: explicit, else the broker, else the in-process store."""
        return self.state_url or self.broker_url or EMBEDDED_STATE_URL

    @property
    def workspace_cache(self) -> Path:
        """The folder holding runs' repository copies on this host."""
        if self.workspaces_dir is not None:
            return self.workspaces_dir
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(cache) / "bcce" / "workspaces"

    @property
    def artifacts_cache(self) -> Path:
        """Where a host keeps its copy of remote runs' artifacts."""
        return self.workspace_cache.parent / "artifacts"

    @property
    def audit_public_key_files(self) -> list[Path]:
        """The audit public key files, from the comma-separated setting."""
        return [Path(p.strip()) for p in (self.audit_public_keys or "").split(",") if p.strip()]

    @property
    def gate_public_key_files(self) -> list[Path]:
        """The public key files, from the comma-separated setting."""
        return [Path(p.strip()) for p in (self.gate_public_keys or "").split(",") if p.strip()]

    @property
    def visibility_timeout(self) -> int:
        """Redis visibility timeout: above the longest allowed step, so it is never redelivered."""
        return self.max_step_timeout_seconds + 600

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest precedence first: flags, environment, the config file, SSM (module doc)."""
        from bcce.configsources import ConfigFileSource, SsmSource, config_file

        return (
            init_settings,
            env_settings,
            dotenv_settings,
            file_secret_settings,
            ConfigFileSource(settings_cls, config_file()),
            SsmSource(settings_cls),
        )
