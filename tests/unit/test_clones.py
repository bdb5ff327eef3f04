"""Tests for run workspaces: recorded at submission, rebuilt on any host, cheap on one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bcce import clones
from bcce.records import RunRecord, RunStatus, StepRecord
from bcce.workspace import WORKSPACE_PATCH, WorkspaceError, capture
from tests.gitrepo import git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    ws = tmp_path / "repo"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("a = 1\n")
    (ws / ".gitignore").write_text("/.bcce_runs/\n*.log\n")
    git(ws, "init", "-q")
    git(ws, "add", ".")
    git(ws, "commit", "-qm", "init")
    # Uncommitted work the run must start from: a change, a new file, an ignored file.
    (ws / "src" / "app.py").write_text("a = 2\n")
    (ws / "draft.md").write_text("draft\n")
    (ws / "debug.log").write_text("ignored\n")
    return ws


def new_run(repo: Path, steps: list[str], workspace: Path | None = None) -> RunRecord:
    run_dir = repo / ".bcce_runs" / "r1"
    origin = capture(workspace or repo, run_dir)
    assert origin is not None
    return RunRecord(
        id="r1",
        workflow="w",
        status=RunStatus.RUNNING,
        created_at=0,
        workspace=str(workspace or repo),
        run_dir=str(run_dir),
        step_ids=steps,
        origin=origin,
    )


def run_step(
    run: RunRecord, records: list[StepRecord], step_id: str, cache: Path, edit: dict[str, str]
) -> clones.Prepared:
    """Prepare the step's workspace, make its edit, record it as the task does."""
    ready = clones.prepare(run, records, step_id, cache, Path(run.run_dir))
    for path, text in edit.items():
        (ready.path / path).parent.mkdir(parents=True, exist_ok=True)
        (ready.path / path).write_text(text)
    step_dir = Path(run.run_dir) / step_id
    step_dir.mkdir(parents=True, exist_ok=True)
    tree = ready.finish(step_dir)
    index = [r.id for r in records].index(step_id)
    records[index] = records[index].model_copy(update={"tree": tree})
    return ready


def test_submission_records_head_and_uncommitted_work(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    run = new_run(repo, ["a"])
    assert run.origin is not None
    assert run.origin.base_commit == head
    assert run.origin.repo == str(repo.resolve())
    patch = (Path(run.run_dir) / WORKSPACE_PATCH).read_text()
    assert "+a = 2" in patch and "draft.md" in patch
    assert "debug.log" not in patch and ".bcce_runs" not in patch
    assert git(repo, "status", "--porcelain") == " M src/app.py\n?? draft.md\n"  # untouched


def test_steps_work_in_a_copy_and_the_repository_never_changes(repo: Path, tmp_path: Path) -> None:
    run = new_run(repo, ["one", "two"])
    records = [StepRecord(id=s, type="cmd", queue="command") for s in ("one", "two")]
    cache = tmp_path / "cache"

    first = run_step(run, records, "one", cache, {"src/app.py": "a = 3\n"})
    assert first.path == cache / "r1"
    assert (first.path / "draft.md").read_text() == "draft\n"  # uncommitted work came along
    assert not (first.path / "debug.log").exists()  # ignored files did not
    assert (repo / "src" / "app.py").read_text() == "a = 2\n"
    assert "+a = 3" in (Path(run.run_dir) / "one" / "changes.diff").read_text()

    second = run_step(run, records, "two", cache, {"new.py": "n\n"})
    assert (second.path / "src" / "app.py").read_text() == "a = 3\n"  # step one's change
    diff = (Path(run.run_dir) / "two" / "changes.diff").read_text()
    assert "new.py" in diff and "app.py" not in diff  # only its own change
    assert git(repo, "status", "--porcelain") == " M src/app.py\n?? draft.md\n"


def test_a_retry_starts_again_from_the_step_before(repo: Path, tmp_path: Path) -> None:
    run = new_run(repo, ["one"])
    records = [StepRecord(id="one", type="cmd", queue="command")]
    cache = tmp_path / "cache"
    ready = clones.prepare(run, records, "one", cache, Path(run.run_dir))
    (ready.path / "half-done.txt").write_text("x\n")  # a failed attempt's leftovers
    again = clones.prepare(run, records, "one", cache, Path(run.run_dir))
    assert not (again.path / "half-done.txt").exists()
    assert again.before == run.origin.start_tree  # type: ignore[union-attr]


def test_another_host_rebuilds_the_workspace_from_the_recorded_diffs(
    repo: Path, tmp_path: Path
) -> None:
    run = new_run(repo, ["one", "two", "three"])
    records = [StepRecord(id=s, type="cmd", queue="command") for s in ("one", "two", "three")]
    run_step(run, records, "one", tmp_path / "host-a", {"src/app.py": "a = 3\n"})
    run_step(run, records, "two", tmp_path / "host-b", {"b.txt": "b\n"})
    # Host C has never seen this run: it clones, then replays steps one and two.
    third = clones.prepare(run, records, "three", tmp_path / "host-c", Path(run.run_dir))
    assert (third.path / "src" / "app.py").read_text() == "a = 3\n"
    assert (third.path / "b.txt").read_text() == "b\n"
    assert third.before == records[1].tree


def test_a_host_without_the_repository_clones_its_remote(repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    run = new_run(repo, ["one"])
    records = [StepRecord(id="one", type="cmd", queue="command")]
    moved = run.model_copy(
        update={"origin": run.origin.model_copy(update={"repo": str(tmp_path / "gone")})}  # type: ignore[union-attr]
    )
    ready = clones.prepare(moved, records, "one", tmp_path / "cache", Path(moved.run_dir))
    assert (ready.path / "src" / "app.py").read_text() == "a = 2\n"  # via workspace.patch
    assert (ready.path / "draft.md").read_text() == "draft\n"


def test_a_tampered_diff_is_detected_not_used(repo: Path, tmp_path: Path) -> None:
    run = new_run(repo, ["one", "two"])
    records = [StepRecord(id=s, type="cmd", queue="command") for s in ("one", "two")]
    run_step(run, records, "one", tmp_path / "host-a", {"src/app.py": "a = 3\n"})
    diff = Path(run.run_dir) / "one" / "changes.diff"
    diff.write_text(diff.read_text().replace("+a = 3", "+a = 666"))
    with pytest.raises(Exception, match=r"changes\.diff is missing or altered"):
        clones.prepare(run, records, "two", tmp_path / "host-b", Path(run.run_dir))


def test_a_workspace_inside_the_repository_is_the_same_folder_in_the_copy(
    repo: Path, tmp_path: Path
) -> None:
    run = new_run(repo, ["one"], workspace=repo / "src")
    assert run.origin is not None and run.origin.subdir == "src"
    records = [StepRecord(id="one", type="cmd", queue="command")]
    ready = clones.prepare(run, records, "one", tmp_path / "cache", Path(run.run_dir))
    assert ready.path == tmp_path / "cache" / "r1" / "src"
    assert (ready.path / "app.py").read_text() == "a = 2\n"


def test_outside_a_repository_nothing_is_recorded(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert capture(plain, plain / ".bcce_runs" / "r1") is None


def test_stale_copies_are_removed(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "old-run").mkdir(parents=True)
    lock = cache / "old-run.lock"
    lock.write_text("")
    import os

    os.utime(lock, (0, 0))
    run = new_run(repo, ["one"])
    clones.prepare(
        run, [StepRecord(id="one", type="cmd", queue="command")], "one", cache, Path(run.run_dir)
    )
    assert not (cache / "old-run").exists() and (cache / "r1").is_dir()
    shutil.rmtree(cache)


def test_checkout_gives_the_workspace_after_any_step(repo: Path, tmp_path: Path) -> None:
    run = new_run(repo, ["one", "two", "three"])
    records = [StepRecord(id=s, type="cmd", queue="command") for s in ("one", "two", "three")]
    run_step(run, records, "one", tmp_path / "host", {"src/app.py": "a = 3\n"})
    run_step(run, records, "two", tmp_path / "host", {"b.txt": "b\n"})

    after_one = tmp_path / "after-one"
    assert clones.checkout(run, records, "one", after_one, Path(run.run_dir)) == records[0].tree
    assert (after_one / "src" / "app.py").read_text() == "a = 3\n"
    assert not (after_one / "b.txt").exists()
    # HEAD is the base commit; git shows the submitted and the run's changes against it.
    assert git(after_one, "status", "--porcelain") == " M src/app.py\n?? draft.md\n"

    latest = tmp_path / "latest"
    assert clones.checkout(run, records, None, latest, Path(run.run_dir)) == records[1].tree
    assert (latest / "b.txt").read_text() == "b\n"

    with pytest.raises(WorkspaceError, match="step three of run r1 has no recorded workspace"):
        clones.checkout(run, records, "three", tmp_path / "never", Path(run.run_dir))
    with pytest.raises(WorkspaceError, match="is not empty"):
        clones.checkout(run, records, "one", latest, Path(run.run_dir))
