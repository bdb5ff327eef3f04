"""Tests for bcce.audit: the chain holds, and every way of altering it is caught."""

from __future__ import annotations

import base64
import json
import threading

import fakeredis
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bcce import audit
from bcce.audit import GENESIS, Signer, canonical, line_hash, verify
from bcce.records import RunRecord, RunStatus, StepRecord
from bcce.state import RunStore

RUN = "2026-11-27T03-00-00-abcdef"
STEP = StepRecord(id="a", type="cmd", queue="command")


def signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate(), configured=True)


def chain(n: int, key: Signer | None = None) -> list[str]:
    key = key or signer()
    lines: list[str] = []
    for i in range(n):
        lines.append(key.seal(lines[-1] if lines else None, i, RUN, {"type": f"e{i}", "n": i}))
    return lines


def resign(record: dict[str, object], key: Signer) -> str:
    """What a forger with their own key can do to one record."""
    body = {k: v for k, v in record.items() if k != "sig"}
    body["key"], body["pub"] = key.key_id, key.public_b64
    sig = base64.b64encode(key.private.sign(canonical(body).encode())).decode()
    return canonical({**body, "sig": sig})


def test_an_untouched_log_is_intact() -> None:
    key = signer()
    lines = chain(5, key)
    first = json.loads(lines[0])
    assert first["prev"] == GENESIS and first["seq"] == 0 and first["kind"] == "e0"
    assert json.loads(lines[1])["prev"] == line_hash(lines[0])
    verdict = verify(lines, RUN, {key.key_id: key.private.public_key()}, audit.head_of(lines))
    assert verdict.ok and verdict.records == 5 and verdict.keys == {key.key_id: 5}


def test_changing_a_record_is_caught_at_that_record() -> None:
    lines = chain(4)
    record = json.loads(lines[2])
    record["data"]["n"] = 99
    lines[2] = canonical(record)
    verdict = verify(lines, RUN)
    assert (verdict.at, verdict.problem) == (
        2,
        "record 2 has a bad signature: it was changed after it was written",
    )


def test_reformatting_a_record_is_caught() -> None:
    lines = chain(2)
    lines[1] = json.dumps(json.loads(lines[1]), indent=1)
    assert verify(lines, RUN).problem == "record 1 was rewritten (it is not in canonical form)"


@pytest.mark.parametrize(
    ("alter", "at", "says"),
    [
        (lambda ls: ls[:1] + ls[2:], 1, "records were removed, reordered or inserted"),
        (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], 1, "records were removed"),
        (lambda ls: [*ls[:2], ls[1], *ls[2:]], 2, "records were removed"),
    ],
    ids=["removed", "reordered", "duplicated"],
)
def test_removing_reordering_or_inserting_records_is_caught(alter, at, says) -> None:  # type: ignore[no-untyped-def]
    verdict = verify(alter(chain(5)), RUN)
    assert verdict.at == at and says in (verdict.problem or "")


def test_a_forger_who_re_signs_the_tail_is_caught_by_the_trusted_keys() -> None:
    honest, forger = signer(), signer()
    lines = chain(4, honest)
    record = json.loads(lines[2])
    record["data"]["n"] = 99
    forged = lines[:2]
    for i in range(2, 4):
        record = json.loads(lines[i]) if i != 2 else record
        record["prev"] = line_hash(forged[-1])
        forged.append(resign(record, forger))
    assert verify(forged, RUN).problem is None  # the chain alone is consistent again...
    trusted = {honest.key_id: honest.private.public_key()}
    verdict = verify(forged, RUN, trusted)
    assert not verdict.ok and verdict.unknown_keys == [forger.key_id]  # ...but not its keys


def test_cutting_records_from_the_end_is_caught_by_the_runs_head() -> None:
    lines = chain(5)
    head = audit.head_of(lines)
    verdict = verify(lines[:3], RUN, head=head)
    assert verdict.problem == "2 record(s) missing from the end: the run recorded 5, the log has 3"


def test_a_record_of_another_run_is_caught() -> None:
    key = signer()
    lines = chain(1, key)
    lines.append(key.seal(lines[0], 1, "another-run", {"type": "x"}))
    assert verify(lines, RUN).problem == "record 1 belongs to run 'another-run'"


def test_records_are_redacted_before_they_are_sealed() -> None:
    line = signer().seal(None, 0, RUN, {"type": "step.finished", "error": "AKIAIOSFODNN7EXAMPLE"})
    assert "AKIAIOSFODNN7EXAMPLE" not in line and "[REDACTED" in line


def run_record() -> RunRecord:
    return RunRecord(
        id=RUN,
        workflow="w",
        status=RunStatus.QUEUED,
        created_at=0,
        workspace="/w",
        run_dir="/w/r",
        step_ids=["a"],
    )


def test_concurrent_writers_never_fork_the_chain() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    stores = [RunStore(client, 3600, signer=signer()) for _ in range(4)]
    stores[0].create(run_record(), {}, [STEP], {"by": "me@host"})

    def write(store: RunStore, n: int) -> None:
        for i in range(25):
            if i % 2:  # the step-record path seals inside its own transaction
                store.put_step(RUN, STEP, {"type": "step.tick", "writer": n, "i": i})
            else:
                store.emit(RUN, {"type": "tick", "writer": n, "i": i})

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = stores[0].audit_lines(RUN)
    assert len(lines) == 1 + 4 * 25
    verdict = verify(lines, RUN)
    assert verdict.ok, verdict.problem
    assert json.loads(lines[0])["data"]["by"] == "me@host"


def test_the_log_expires_with_the_run() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    store = RunStore(client, 3600, signer=signer())
    store.create(run_record(), {}, [STEP])
    store.finish(RUN, RunStatus.SUCCEEDED)
    assert 0 < client.ttl(f"bcce:run:{RUN}:audit") <= 3600
    assert json.loads(store.audit_lines(RUN)[-1])["kind"] == "run.finished"
