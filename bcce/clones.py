"""The copies of a run's repository its steps work in, on whichever host runs them.

A run started in a git repository never has its steps edit the user's working tree: each
host keeps one clone a run (``git clone --shared``, so no object is copied on the
submitting host), and before every step brings it to the state the step expects, the
tree recorded after the step before it. On the host that ran that step the clone already
is in that state and nothing is done; elsewhere the clone is reset to the newest state it
holds and the later steps' ``changes.diff`` are applied in order, then checked to give
exactly the recorded tree. After the step its own change is recorded the same way.

Only ``apply_diff`` writes to the user's repository, and only what was approved.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bcce.records import Origin, RunRecord, StepRecord
from bcce.workspace import EMPTY_TREE, WORKSPACE_PATCH, Tracker, WorkspaceError

CHANGES = "changes.diff"
STALE_SECONDS = 24 * 3600
"""A clone untouched this long is removed (by the next step prepared on the host)."""


@dataclass(frozen=True)
class Prepared:
    """A run's clone, in the state one step starts from."""

    root: Path
    """The clone's top folder."""
    path: Path
    """Where the step runs: the clone's copy of the submitted workspace folder."""
    tracker: Tracker
    before: str
    """The tree the step starts from."""

    def finish(self, step_dir: Path) -> str:
        """Record what the step changed (``changes.diff``) and return the tree after it."""
        after = self.tracker.snapshot()
        (step_dir / CHANGES).write_bytes(self.tracker.diff(self.before, after))
        return after


def before(steps: list[StepRecord], step_id: str) -> list[StepRecord]:
    """The steps that come before step_id."""
    return steps[: [s.id for s in steps].index(step_id)]


def tree_after(origin: Origin, steps: list[StepRecord]) -> str:
    """The workspace after these steps: the tree of the last that recorded one."""
    trees = [s.tree for s in steps if s.tree]
    return trees[-1] if trees else origin.start_tree


def prepare(
    run: RunRecord, steps: list[StepRecord], step_id: str, cache_dir: Path, run_dir: Path
) -> Prepared:
    """The run's clone on this host, in the state step_id starts from (run_dir: this host's
    folder of the run's artifacts, holding the earlier steps' diffs)."""
    origin = run.origin
    assert origin is not None
    cache_dir.mkdir(parents=True, exist_ok=True)
    _prune(cache_dir, run.id)
    root = cache_dir / run.id
    earlier = before(steps, step_id)
    want = tree_after(origin, earlier)
    with _locked(cache_dir / f"{run.id}.lock"):
        if not (root / ".git").exists():
            _clone(origin, root, run_dir, shared=True)
        tracker = Tracker(root)
        if tracker.snapshot() != want:
            _rebuild(tracker, origin, earlier, want, run_dir, f"step {step_id}")
    return Prepared(root, root / origin.subdir, tracker, want)


def checkout(
    run: RunRecord, steps: list[StepRecord], step_id: str | None, dest: Path, run_dir: Path
) -> str:
    """A clone of the run's repository in dest, its working tree as the run's workspace was
    after step_id (default: the last step that ran); HEAD is the run's base commit."""
    origin = run.origin
    if origin is None:
        raise WorkspaceError(
            f"run {run.id} did not start in a git repository: its steps worked in "
            f"{run.workspace} itself, which is its only copy"
        )
    upto = (
        steps
        if step_id is None
        else [*before(steps, _find(steps, step_id).id), _find(steps, step_id)]
    )
    if step_id is not None and not upto[-1].tree:
        raise WorkspaceError(
            f"step {step_id} of run {run.id} has no recorded workspace: it has not run"
        )
    if dest.exists() and any(dest.iterdir()):
        raise WorkspaceError(f"{dest} is not empty: give a new or empty folder")
    want = tree_after(origin, upto)
    _clone(origin, dest, run_dir, shared=False)
    tracker = Tracker(dest)
    if tracker.snapshot() != want:
        what = f"step {step_id}" if step_id else "the last step"
        _rebuild(tracker, origin, upto, want, run_dir, what)
    # The index as HEAD, so `git status` and `git diff` show what the run started from and did.
    tracker.git("read-tree", *(["HEAD"] if origin.base_commit else ["--empty"]))
    return want


def _find(steps: list[StepRecord], step_id: str) -> StepRecord:
    for step in steps:
        if step.id == step_id:
            return step
    raise WorkspaceError(f"no step {step_id!r}; steps: {', '.join(s.id for s in steps)}")


def _clone(origin: Origin, root: Path, run_dir: Path, *, shared: bool) -> None:
    source = origin.repo
    local = Path(source).is_dir() and Tracker(Path(source)).git_ok("rev-parse", "--git-dir")
    if not local:
        if not origin.remote_url:
            raise WorkspaceError(
                f"the run's repository {source} is not on this host and has no `origin` "
                "remote to clone: run this pool where the repository is (or on a shared "
                "volume), or give the repository a remote"
            )
        source = origin.remote_url
    scratch = root.with_name(f".{root.name}.cloning")
    shutil.rmtree(scratch, ignore_errors=True)
    args = ["clone", "--quiet", "--no-checkout"] + (["--shared"] if local and shared else [])
    _git(Path.cwd(), *args, "--", source, str(scratch))
    clone = Tracker(scratch)
    if origin.base_commit:
        if not clone.has(origin.base_commit):
            clone.git("fetch", "--quiet", "origin", origin.base_commit)
        clone.git("checkout", "--quiet", "--detach", origin.base_commit)
    if clone.has(origin.start_tree):
        _reset(clone, origin.start_tree)
    else:
        _apply(clone, run_dir / WORKSPACE_PATCH)
        clone.snapshot()  # the submitted state's objects, for diffs against it later
    if root.exists():
        root.rmdir()  # an empty folder the caller gave
    os.replace(scratch, root)


def _rebuild(
    tracker: Tracker,
    origin: Origin,
    earlier: list[StepRecord],
    want: str,
    run_dir: Path,
    what: str,
) -> None:
    """Reset to the newest state the clone holds, then apply the later steps' changes."""
    if tracker.has(want):
        _reset(tracker, want)
        return
    recorded = [s for s in earlier if s.tree]
    start, replay = origin.start_tree, recorded
    for index in range(len(recorded) - 1, -1, -1):
        tree = recorded[index].tree
        if tree and tracker.has(tree):
            start, replay = tree, recorded[index + 1 :]
            break
    if tracker.has(start):
        _reset(tracker, start)
    else:  # nothing of this run here yet: the base commit plus the submitted changes
        base = origin.base_commit
        _reset(tracker, tracker.git_ok("rev-parse", f"{base}^{{tree}}") if base else EMPTY_TREE)
        _apply(tracker, run_dir / WORKSPACE_PATCH)
    for record in replay:
        _apply(tracker, run_dir / record.id / CHANGES)
    got = tracker.snapshot()
    if got != want:
        raise WorkspaceError(
            f"rebuilding the workspace for {what} gave tree {got[:12]}, not the "
            f"recorded {want[:12]}: an earlier step's changes.diff is missing or altered"
        )


def _reset(tracker: Tracker, tree: str | None) -> None:
    """Make the working tree exactly tree (ignored files stay)."""
    tracker.git("read-tree", tree or EMPTY_TREE)
    tracker.git("checkout-index", "--all", "--force")
    tracker.git("clean", "-ffdq")


def _apply(tracker: Tracker, patch: Path) -> None:
    try:
        size = patch.stat().st_size
    except FileNotFoundError:
        raise WorkspaceError(f"{patch} is missing: cannot rebuild the workspace") from None
    if size:
        tracker.git("apply", "--binary", "--whitespace=nowarn", str(patch))


def _git(cwd: Path, *args: str) -> None:
    done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, check=False)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise WorkspaceError(f"git {args[0]} failed: {reason[-1] if reason else done.returncode}")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            os.utime(path)  # in use: not stale
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prune(cache_dir: Path, keep: str) -> None:
    """Remove clones of runs no step has used for a day (best effort)."""
    cutoff = time.time() - STALE_SECONDS
    for lock in cache_dir.glob("*.lock"):
        run_id = lock.name.removesuffix(".lock")
        try:
            if run_id == keep or lock.stat().st_mtime > cutoff:
                continue
            shutil.rmtree(cache_dir / run_id, ignore_errors=True)
            lock.unlink()
        except OSError:
            continue
