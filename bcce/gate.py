"""Signed gate decisions: a step runs only on a grant the policy pool signed for it.

Anyone who can write to Redis can publish a Celery message, so the gate's "allow" is not a
flag in a record but an Ed25519 signature over what was allowed: the run, the step, the
hash of the step's spec as it was judged, the timeout, and an expiry. Only the policy pool
holds the private key; executor pools hold public keys (several, for rotation) and verify
every grant before doing anything. Embedded runs use an ephemeral pair made in-process.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bcce.errors import UsageError
from bcce.policy import Decision
from bcce.settings import Settings
from bcce.workflow import Step

GRANT_VERSION = 1


class GrantRefused(Exception):
    """Raised when a step's grant is missing, forged, expired or not for this step."""


def spec_hash(step: Step) -> str:
    """SHA-256 of the step's spec, as the gate judged it and the executor will run it."""
    canonical = json.dumps(step.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class GateKeys:
    """The keys a process holds: the signing key (policy pool only) and accepted public keys."""

    private: Ed25519PrivateKey | None
    public: Mapping[str, Ed25519PublicKey]

    @classmethod
    def ephemeral(cls) -> GateKeys:
        """A fresh pair, for embedded runs (gate and steps share one process)."""
        private = Ed25519PrivateKey.generate()
        return cls(private, {key_id(private.public_key()): private.public_key()})

    @classmethod
    def load(cls, private_file: Path | None, public_files: list[Path]) -> GateKeys:
        """Keys from PEM files; the signing key's own public key is always accepted."""
        private = None
        public: dict[str, Ed25519PublicKey] = {}
        if private_file is not None:
            loaded = serialization.load_pem_private_key(_read(private_file), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise UsageError(f"{private_file}: not an Ed25519 private key (bcce keys generate)")
            private = loaded
            public[key_id(private.public_key())] = private.public_key()
        for path in public_files:
            key = serialization.load_pem_public_key(_read(path))
            if not isinstance(key, Ed25519PublicKey):
                raise UsageError(f"{path}: not an Ed25519 public key (bcce keys generate)")
            public[key_id(key)] = key
        return cls(private, public)

    def sign(
        self, decision: Decision, run_id: str, step: Step, now: float, ttl_seconds: float
    ) -> dict[str, Any]:
        """A grant for an allow decision."""
        if self.private is None:
            raise GrantRefused(
                "this policy worker has no signing key: set "
                "BCCE_GATE_PRIVATE_KEY_FILE (bcce keys generate)"
            )
        payload = {
            "v": GRANT_VERSION,
            "run": run_id,
            "step": step.id,
            "spec": spec_hash(step),
            "rule": decision.rule,
            "timeout_seconds": decision.timeout_seconds,
            "deadline_bound": decision.deadline_bound,
            "policy": decision.effective,
            "issued_at": now,
            "expires_at": now + ttl_seconds,
            "nonce": secrets.token_hex(8),
        }
        body = _canonical(payload)
        return {
            "payload": payload,
            "key_id": key_id(self.private.public_key()),
            "signature": base64.b64encode(self.private.sign(body)).decode(),
        }

    def verify(self, grant: Any, run_id: str, step: Step, now: float) -> Decision:
        """The decision a grant carries, if it is genuine and for this very step, now."""
        if not isinstance(grant, dict) or not isinstance(grant.get("payload"), dict):
            raise GrantRefused("no grant from bcce.policy.check for this step")
        payload = grant["payload"]
        public = self.public.get(str(grant.get("key_id")))
        if public is None:
            raise GrantRefused(f"grant signed by unknown key {grant.get('key_id')!r}")
        try:
            public.verify(base64.b64decode(str(grant.get("signature"))), _canonical(payload))
        except (InvalidSignature, ValueError):
            raise GrantRefused("grant signature does not verify (forged or altered)") from None
        if payload.get("v") != GRANT_VERSION:
            raise GrantRefused(f"grant version {payload.get('v')!r} is not understood")
        if (payload.get("run"), payload.get("step")) != (run_id, step.id):
            raise GrantRefused(
                f"grant is for {payload.get('run')}/{payload.get('step')}, not {run_id}/{step.id}"
            )
        if payload.get("spec") != spec_hash(step):
            raise GrantRefused("the step's spec changed after the gate judged it")
        if float(payload["expires_at"]) < now:
            raise GrantRefused("grant expired")
        return Decision(
            True,
            str(payload["rule"]),
            "granted",
            float(payload["timeout_seconds"]),
            bool(payload["deadline_bound"]),
            payload.get("policy"),
        )


def _canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read gate key {path}: {exc.strerror or exc}") from None


def generate(directory: Path, force: bool = False) -> tuple[Path, Path]:
    """Write a new pair as ``gate.key`` (mode 0600) and ``gate.pub`` in directory."""
    private_path, public_path = directory / "gate.key", directory / "gate.pub"
    if not force and (private_path.exists() or public_path.exists()):
        raise UsageError(f"{private_path} or {public_path} exists: pass --force to replace")
    directory.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_path.unlink(missing_ok=True)
    # Created 0600 from the start: the key is never readable by others, even for a moment.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


@functools.cache
def ephemeral() -> GateKeys:
    """This process's ephemeral pair (embedded mode)."""
    return GateKeys.ephemeral()


def keys_for(settings: Settings) -> GateKeys:
    """The gate keys of this process: from files, or ephemeral in embedded mode."""
    if settings.embedded:
        return ephemeral()
    return GateKeys.load(settings.gate_private_key_file, settings.gate_public_key_files)
