"""Tests for bcce.workspace: what a step changed, measured with git, and undone."""

from __future__ import annotations

from pathlib import Path

import pytest

from bcce.workspace import Tracker
from tests.gitrepo import git


@pytest.fixture(params=["repository", "plain folder"])
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("a = 1\n")
    (ws / "notes.txt").write_text("keep\n")
    if request.param == "repository":
        git(ws, "init", "-q")
        git(ws, "add", "src/app.py")
        git(ws, "commit", "-qm", "init")
    return ws


def test_changes_are_measured_and_restored_without_touching_the_index(workspace: Path) -> None:
    runs = workspace / ".bcce_runs"
    (runs / "r1").mkdir(parents=True)
    tracker = Tracker.for_workspace(workspace, runs / "r1" / ".track", runs)
    before = tracker.snapshot()
    (workspace / "src" / "app.py").write_text("a = 2\nb = 3\n")
    (workspace / "src" / "new.py").write_text("x\n")
    (workspace / "notes.txt").unlink()
    (runs / "r1" / "transcript.jsonl").write_text("{}\n")  # bcce's own files never count
    after = tracker.snapshot()

    changes = {c.path: (c.status, c.added, c.removed) for c in tracker.changes(before, after)}
    assert changes == {
        "src/app.py": ("M", 2, 1),
        "src/new.py": ("A", 1, 0),
        "notes.txt": ("D", 0, 1),
    }
    patch = tracker.diff(before, after).decode()
    assert "+b = 3" in patch and "deleted file mode" in patch

    tracker.restore(before, list(changes))
    assert (workspace / "src" / "app.py").read_text() == "a = 1\n"
    assert (workspace / "notes.txt").read_text() == "keep\n"
    assert not (workspace / "src" / "new.py").exists()
    assert tracker.changes(before, tracker.snapshot()) == []
    if tracker.git_dir is None:
        assert git(workspace, "diff", "--cached", "--name-only") == ""  # the index is untouched
        assert git(workspace, "ls-files") == "src/app.py\n"


def test_a_plain_folder_is_tracked_in_a_private_git_dir(tmp_path: Path) -> None:
    ws = tmp_path / "plain"
    ws.mkdir()
    tracker = Tracker.for_workspace(ws, tmp_path / "track", tmp_path / "runs")
    assert tracker.git_dir == tmp_path / "track" / "track.git"
    assert not (ws / ".git").exists()
