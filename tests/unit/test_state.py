"""Tests for bcce.state (the run store, on fakeredis), run ids, and the run-state.json mirror."""

from __future__ import annotations

import re
from pathlib import Path

import fakeredis
import pytest

from bcce.artifacts import RUN_STATE, LocalArtifactStore
from bcce.errors import NotFound
from bcce.records import RunRecord, RunStatus, StepRecord, StepStatus, new_run_id
from bcce.state import RUNS_INDEX, RunStore, events_key, run_key, steps_key

TTL = 600


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def store(client: fakeredis.FakeRedis) -> RunStore:
    return RunStore(client, TTL)


def run_record(run_id: str = "r1", created_at: float = 100.0, **changes: object) -> RunRecord:
    fields: dict[str, object] = {
        "id": run_id,
        "workflow": "w",
        "status": RunStatus.QUEUED,
        "created_at": created_at,
        "workspace": "/ws",
        "run_dir": f"/ws/.bcce_runs/{run_id}",
        "step_ids": ["build", "test"],
    }
    return RunRecord.model_validate({**fields, **changes})


def step_records() -> list[StepRecord]:
    # Given out of order: the store keeps the workflow's order, not the hash's.
    return [
        StepRecord(id="test", type="cmd", queue="command"),
        StepRecord(id="build", type="cmd", queue="command"),
    ]


def create(
    store: RunStore, run_id: str = "r1", created_at: float = 100.0, **changes: object
) -> None:
    store.create(
        run_record(run_id, created_at, **changes), {"version": 1, "workflow": "w"}, step_records()
    )


def event_types(store: RunStore, run_id: str = "r1") -> list[str]:
    return [event["type"] for _, event in store.events(run_id)]


# Run ids


def test_a_run_id_is_utc_time_and_six_hex_digits() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-[0-9a-f]{6}", new_run_id())


def test_a_run_id_shows_the_utc_time_it_was_made_at() -> None:
    assert new_run_id(1_795_705_387.0).startswith("2026-11-26T15-03-07-")


def test_two_run_ids_made_in_the_same_second_differ() -> None:
    assert new_run_id(0.0) != new_run_id(0.0)


# Creating and reading


def test_a_created_run_reads_back_with_its_snapshot_and_steps_in_workflow_order(
    store: RunStore,
) -> None:
    create(store)
    assert store.run("r1") == run_record()
    assert store.snapshot("r1") == {"version": 1, "workflow": "w"}
    assert [s.id for s in store.steps("r1")] == ["build", "test"]
    assert store.step("r1", "test") == StepRecord(id="test", type="cmd", queue="command")


def test_creating_a_run_emits_run_submitted(store: RunStore) -> None:
    create(store)
    [(_, event)] = store.events("r1")
    assert (event["type"], event["status"]) == ("run.submitted", "queued")


def test_a_run_that_has_not_finished_never_expires(
    store: RunStore, client: fakeredis.FakeRedis
) -> None:
    create(store)
    assert [client.ttl(k) for k in (run_key("r1"), steps_key("r1"), events_key("r1"))] == [
        -1,
        -1,
        -1,
    ]


@pytest.mark.parametrize(
    "read",
    [
        lambda s: s.run("nope"),
        lambda s: s.snapshot("nope"),
        lambda s: s.steps("nope"),
        lambda s: s.step("nope", "build"),
        lambda s: s.finish("nope", RunStatus.FAILED),
        lambda s: s.update_step("nope", "build", lambda r: r),
    ],
    ids=["run", "snapshot", "steps", "step", "finish", "update_step"],
)
def test_an_unknown_run_is_not_found(store: RunStore, read: object) -> None:
    with pytest.raises(NotFound):
        read(store)  # type: ignore[operator]


def test_the_not_found_message_names_the_run_and_says_it_may_have_expired(
    store: RunStore,
) -> None:
    with pytest.raises(NotFound) as caught:
        store.run("nope")
    assert str(caught.value) == "no run 'nope' in the run store (it may have expired)"


def test_an_unknown_step_of_a_known_run_is_not_found(store: RunStore) -> None:
    create(store)
    with pytest.raises(NotFound) as caught:
        store.step("r1", "deploy")
    assert str(caught.value) == "run 'r1' has no step 'deploy'"


# Updating


def test_update_step_stores_the_change_and_emits_its_event(store: RunStore) -> None:
    create(store)
    updated = store.update_step(
        "r1",
        "build",
        lambda s: s.model_copy(update={"status": StepStatus.RUNNING, "attempts": 1}),
        {"type": "step.started", "step": "build"},
    )
    assert updated is not None and updated.status == StepStatus.RUNNING
    assert store.step("r1", "build").attempts == 1
    assert store.step("r1", "test").status == StepStatus.PENDING
    assert event_types(store) == ["run.submitted", "step.started"]


def test_a_change_that_returns_none_leaves_the_record_and_emits_nothing(store: RunStore) -> None:
    create(store)
    assert store.update_run("r1", lambda r: None, {"type": "run.started"}) is None
    assert store.run("r1") == run_record()
    assert event_types(store) == ["run.submitted"]


# Finishing


def test_finishing_a_run_records_its_status_and_error(store: RunStore) -> None:
    create(store)
    assert store.finish("r1", RunStatus.FAILED, "step build failed") is True
    run = store.run("r1")
    assert (run.status, run.error) == (RunStatus.FAILED, "step build failed")
    assert run.finished_at is not None
    [*_, (_, last)] = store.events("r1")
    assert last["type"] == "run.finished"
    assert (last["status"], last["error"]) == ("failed", "step build failed")


def test_a_second_finish_changes_nothing_and_returns_false(store: RunStore) -> None:
    create(store)
    assert store.finish("r1", RunStatus.SUCCEEDED) is True
    assert store.finish("r1", RunStatus.CANCELLED, "too late") is False
    assert store.run("r1").status == RunStatus.SUCCEEDED
    assert event_types(store).count("run.finished") == 1


def test_a_finished_run_expires_after_the_ttl(store: RunStore, client: fakeredis.FakeRedis) -> None:
    create(store)
    store.finish("r1", RunStatus.SUCCEEDED)
    for key in (run_key("r1"), steps_key("r1"), events_key("r1")):
        assert 0 < client.ttl(key) <= TTL, key


# Events


def test_events_come_in_order_and_after_skips_those_already_seen(store: RunStore) -> None:
    create(store)
    store.emit("r1", {"type": "step.started", "step": "build"})
    store.emit("r1", {"type": "step.finished", "step": "build", "status": "succeeded"})
    events = store.events("r1")
    assert [e["type"] for _, e in events] == ["run.submitted", "step.started", "step.finished"]
    after_first = store.events("r1", after=events[0][0])
    assert after_first == events[1:]
    assert store.events("r1", after=events[-1][0]) == []


def test_an_event_keeps_its_data_and_gets_a_time(store: RunStore) -> None:
    create(store)
    store.emit("r1", {"type": "step.denied", "step": "test", "rule": "cmd_allowlist"})
    [*_, (_, event)] = store.events("r1")
    assert {k: event[k] for k in ("type", "step", "rule")} == {
        "type": "step.denied",
        "step": "test",
        "rule": "cmd_allowlist",
    }
    assert isinstance(event["time"], float)


def test_waiting_for_events_returns_those_already_there(store: RunStore) -> None:
    create(store)
    assert [e["type"] for _, e in store.events("r1", block_ms=10)] == ["run.submitted"]


# Listing


def test_runs_are_listed_newest_first(store: RunStore) -> None:
    for run_id, created in (("old", 1.0), ("new", 3.0), ("mid", 2.0)):
        create(store, run_id, created)
    assert [r.id for r in store.list_runs()] == ["new", "mid", "old"]
    assert [r.id for r in store.list_runs(limit=2)] == ["new", "mid"]


def test_runs_can_be_listed_by_status(store: RunStore) -> None:
    for run_id, created in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        create(store, run_id, created)
    store.finish("a", RunStatus.FAILED)
    store.finish("c", RunStatus.FAILED)
    assert [r.id for r in store.list_runs(status=RunStatus.FAILED)] == ["c", "a"]
    assert [r.id for r in store.list_runs(status=RunStatus.QUEUED)] == ["b"]
    assert store.list_runs(status=RunStatus.CANCELLED) == []


def test_status_filtering_looks_past_the_first_page(store: RunStore) -> None:
    create(store, "wanted", 0.0)
    store.finish("wanted", RunStatus.DENIED)
    for i in range(60):
        create(store, f"r{i:02d}", 1.0 + i)
    assert [r.id for r in store.list_runs(limit=1, status=RunStatus.DENIED)] == ["wanted"]


def test_expired_runs_are_pruned_from_the_index_when_listing(
    store: RunStore, client: fakeredis.FakeRedis
) -> None:
    create(store, "gone", 1.0)
    create(store, "kept", 2.0)
    client.delete(run_key("gone"))  # what the TTL does once a finished run expires
    assert [r.id for r in store.list_runs()] == ["kept"]
    assert client.zrange(RUNS_INDEX, 0, -1) == ["kept"]


def test_a_deleted_run_leaves_no_trace(store: RunStore, client: fakeredis.FakeRedis) -> None:
    create(store)
    store.delete("r1")
    assert client.keys("*") == []
    with pytest.raises(NotFound):
        store.run("r1")


# The run-state.json mirror


def test_the_mirror_writes_the_run_with_its_steps_to_run_state_json(tmp_path: Path) -> None:
    artifacts = LocalArtifactStore(tmp_path / "run")
    run = run_record()
    artifacts.mirror(run, [StepRecord(id="build", type="cmd", queue="command")])
    assert (tmp_path / "run" / RUN_STATE).is_file()
    mirrored, steps = artifacts.read_state()
    assert mirrored == run
    assert [s.id for s in steps] == ["build"]


def test_a_step_json_artifact_goes_in_the_step_folder(tmp_path: Path) -> None:
    path = LocalArtifactStore(tmp_path).write_json("build", "policy.json", {"allowed": True})
    assert path == tmp_path / "build" / "policy.json"
    assert path.read_text() == '{\n  "allowed": true\n}\n'
