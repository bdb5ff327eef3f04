"""A tamper-evident audit trail per run: every event of the run, chained and signed.

Each record is one line of canonical JSON (sorted keys, no spaces)::

    {"at": …, "data": {event}, "key": KEY_ID, "kind": "step.finished", "prev": SHA256,
     "pub": PUBLIC_KEY, "run": RUN_ID, "seq": N, "sig": SIGNATURE}

``prev`` is the SHA-256 of the previous line (64 zeros for the first), so changing,
removing, reordering or inserting a record breaks the chain from there on; ``sig`` is an
Ed25519 signature over the line without ``sig``, so a record cannot be rewritten without
the key. Records are appended to ``bcce:run:<id>:audit`` in Redis by whichever process
writes the event (gate, step pools, the CLI for submissions and approvals), with an
optimistic lock so concurrent writers never fork the chain, and copied to the run's
artifacts as ``audit.jsonl`` with run-state.json.

The signing key is ``BCCE_AUDIT_KEY_FILE`` (an Ed25519 PEM, e.g. from ``bcce keys
generate``) on every host that runs bcce; ``bcce audit verify`` checks signatures against
``BCCE_AUDIT_PUBLIC_KEYS``. Without a configured key each process signs with an ephemeral
key whose public half the record carries: the chain still shows any edit, removal,
reordering or insertion, but only configured keys prove who wrote a record, and ``verify``
says which records were signed by keys it does not know.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bcce.errors import UsageError
from bcce.redact import DEFAULT as REDACTOR
from bcce.settings import Settings

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    """The one JSON spelling of obj that hashes and signatures are computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def line_hash(line: str) -> str:
    """SHA-256 of a record line: what the next record's ``prev`` must be."""
    return hashlib.sha256(line.encode()).hexdigest()


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key (as ``bcce.gate`` names gate keys)."""
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """The key this process signs audit records with."""

    private: Ed25519PrivateKey
    configured: bool

    @functools.cached_property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    @functools.cached_property
    def public_b64(self) -> str:
        return base64.b64encode(_raw(self.private.public_key())).decode()

    def seal(self, previous: str | None, seq: int, run_id: str, event: Mapping[str, Any]) -> str:
        """The record line that follows the line previous (None: the first record)."""
        body = {
            "seq": seq,
            "at": round(time.time(), 6),
            "run": run_id,
            "kind": str(event.get("type", "")),
            "data": REDACTOR.json(dict(event)),
            "prev": line_hash(previous) if previous is not None else GENESIS,
            "key": self.key_id,
            "pub": self.public_b64,
        }
        signature = self.private.sign(canonical(body).encode())
        return canonical({**body, "sig": base64.b64encode(signature).decode()})


@functools.cache
def _ephemeral() -> Signer:
    return Signer(Ed25519PrivateKey.generate(), configured=False)


def signer_for(settings: Settings) -> Signer:
    """This process's signer: the configured key, else an ephemeral one."""
    if settings.audit_key_file is None:
        return _ephemeral()
    return _load_signer(settings.audit_key_file)


@functools.cache
def _load_signer(path: Path) -> Signer:
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise UsageError(f"BCCE_AUDIT_KEY_FILE {path}: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise UsageError(f"BCCE_AUDIT_KEY_FILE {path}: not an Ed25519 private key")
    return Signer(loaded, configured=True)


def trusted_keys(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """The public keys ``verify`` vouches for: BCCE_AUDIT_PUBLIC_KEYS and the configured
    signing key's own."""
    keys: dict[str, Ed25519PublicKey] = {}
    if settings.audit_key_file is not None:
        public = _load_signer(settings.audit_key_file).private.public_key()
        keys[key_id(public)] = public
    for path in settings.audit_public_key_files:
        try:
            loaded = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise UsageError(f"BCCE_AUDIT_PUBLIC_KEYS {path}: {exc}") from None
        if not isinstance(loaded, Ed25519PublicKey):
            raise UsageError(f"BCCE_AUDIT_PUBLIC_KEYS {path}: not an Ed25519 public key")
        keys[key_id(loaded)] = loaded
    return keys


@dataclass
class Verdict:
    """What ``verify`` found."""

    records: int
    problem: str | None = None
    """Why the log is not intact (None: it is)."""
    at: int | None = None
    """The index of the first record that is wrong."""
    keys: dict[str, int] = field(default_factory=dict)
    """Key id -> records it signed."""
    unknown_keys: list[str] = field(default_factory=list)
    """Keys not among the trusted ones (only when trusted keys were given)."""

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.unknown_keys


def verify(
    lines: Iterable[str],
    run_id: str,
    trusted: Mapping[str, Ed25519PublicKey] | None = None,
    head: Mapping[str, Any] | None = None,
) -> Verdict:
    """Check every record: its place, the chain, its signature, its key.

    head (``{"records": n, "hash": sha256}`` as recorded with the run) also catches records
    cut from the end, which the chain alone cannot show.
    """
    verdict = Verdict(0)
    previous: str | None = None
    for index, line in enumerate(lines):
        verdict.records = index + 1
        problem = _check(line, index, previous, run_id, trusted, verdict)
        if problem:
            verdict.problem, verdict.at = problem, index
            return verdict
        previous = line
    if head:
        wanted = int(head.get("records", 0))
        if verdict.records < wanted:
            verdict.problem = (
                f"{wanted - verdict.records} record(s) missing from the end: the run recorded "
                f"{wanted}, the log has {verdict.records}"
            )
            verdict.at = verdict.records
        elif (
            previous is not None
            and wanted == verdict.records
            and head.get("hash")
            and line_hash(previous) != head["hash"]
        ):
            verdict.problem = "the last record is not the one the run recorded"
            verdict.at = verdict.records - 1
    return verdict


def _check(
    line: str,
    index: int,
    previous: str | None,
    run_id: str,
    trusted: Mapping[str, Ed25519PublicKey] | None,
    verdict: Verdict,
) -> str | None:
    try:
        record = json.loads(line)
        body = {k: v for k, v in record.items() if k != "sig"}
        signature = base64.b64decode(record["sig"], validate=True)
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(record["pub"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"record {index} is not a well-formed audit record"
    if canonical(record) != line:
        return f"record {index} was rewritten (it is not in canonical form)"
    if record.get("seq") != index:
        return (
            f"record {index} says it is record {record.get('seq')}: records were removed, "
            "reordered or inserted"
        )
    if record.get("run") != run_id:
        return f"record {index} belongs to run {record.get('run')!r}"
    expected = line_hash(previous) if previous is not None else GENESIS
    if record.get("prev") != expected:
        return f"record {index} does not follow record {index - 1}: the chain is broken"
    if record.get("key") != key_id(public):
        return f"record {index} names key {record.get('key')} but carries another"
    try:
        public.verify(signature, canonical(body).encode())
    except InvalidSignature:
        return f"record {index} has a bad signature: it was changed after it was written"
    kid = str(record["key"])
    verdict.keys[kid] = verdict.keys.get(kid, 0) + 1
    if trusted is not None and kid not in trusted and kid not in verdict.unknown_keys:
        verdict.unknown_keys.append(kid)
    return None


def head_of(lines: list[str]) -> dict[str, Any]:
    """What the run records of its log: how many records, and the hash of the last."""
    return {"records": len(lines), "hash": line_hash(lines[-1]) if lines else GENESIS}
