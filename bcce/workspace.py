"""What a step changed in the workspace, measured with git, and how to take it back.

Before a step that may edit files, :func:`snapshot` records the workspace as a git tree
(tracked and untracked files, .gitignore respected) without touching the user's index,
branches or stash: it writes through a private index file. After the step a second snapshot
gives the exact change (:func:`changes`), which is checked against the policy, stored as
``changes.diff``, and undone file by file (:func:`restore`) when the policy says no.

A workspace that is not a git repository is tracked with a private git directory kept in
the run's folder, so the same checks hold there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bcce.records import Origin

GIT_TIMEOUT_SECONDS = 120
_IDENTITY = {
    "GIT_AUTHOR_NAME": "bcce",
    "GIT_AUTHOR_EMAIL": "bcce@localhost",
    "GIT_COMMITTER_NAME": "bcce",
    "GIT_COMMITTER_EMAIL": "bcce@localhost",
}


class WorkspaceError(Exception):
    """Raised when git cannot snapshot, diff or restore the workspace."""


@dataclass(frozen=True)
class Change:
    """One changed file: its path (workspace-relative) and the lines added and removed."""

    path: str
    status: str
    """A added, M modified, D deleted, T type changed (e.g. became a symlink)."""
    added: int
    removed: int
    binary: bool = False


@dataclass(frozen=True)
class Tracker:
    """Runs git against one workspace: its own repository, or a private git dir."""

    workspace: Path
    git_dir: Path | None = None
    """A private git dir for a workspace that is not a repository; None to use its own."""
    exclude: tuple[str, ...] = ()
    """Workspace-relative folders never tracked (bcce's own runs folder)."""

    @classmethod
    def for_workspace(cls, workspace: Path, private_dir: Path, exclude: Path) -> Tracker:
        """The tracker for workspace; private_dir holds a git dir if it needs one, and the
        folder exclude (where runs are kept) is left out when it lies in the workspace."""
        skip: tuple[str, ...] = ()
        if exclude.resolve().is_relative_to(workspace.resolve()):
            skip = (exclude.resolve().relative_to(workspace.resolve()).as_posix(),)
        if shutil.which("git") is None:
            raise WorkspaceError("git is not installed: it is needed to track what steps change")
        inside = subprocess.run(
            ["git", "-C", str(workspace), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=False,
        )
        if inside.returncode == 0 and Path(inside.stdout.strip()).resolve() == workspace.resolve():
            return cls(workspace, None, skip)
        git_dir = private_dir / "track.git"
        if not (git_dir / "HEAD").exists():
            private_dir.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["git", "init", "--quiet", "--bare", str(git_dir)],
                capture_output=True,
                check=True,
            )
        return cls(workspace, git_dir, skip)

    def git(self, *args: str, index: Path | None = None, input: bytes | None = None) -> bytes:
        """Run a git command in the workspace and return its stdout."""
        env = {**os.environ, **_IDENTITY, "GIT_OPTIONAL_LOCKS": "0"}
        if index is not None:
            env["GIT_INDEX_FILE"] = str(index)
        prefix = ["git", "-C", str(self.workspace)]
        if self.git_dir is not None:
            prefix += ["--git-dir", str(self.git_dir), "--work-tree", str(self.workspace)]
        try:
            done = subprocess.run(
                [*prefix, "-c", "core.quotepath=false", *args],
                env=env,
                input=input,
                capture_output=True,
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise WorkspaceError(f"git {args[0]} took over {GIT_TIMEOUT_SECONDS}s") from None
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            raise WorkspaceError(f"git {args[0]} failed: {reason[-1] if reason else done}")
        return done.stdout

    def git_ok(self, *args: str) -> str | None:
        """stdout of a git command that may fail (stripped), or None when it does."""
        try:
            return self.git(*args).decode().strip() or None
        except WorkspaceError:
            return None

    def has(self, obj: str) -> bool:
        """Whether this repository can read the object (its own store or alternates)."""
        return self.git_ok("cat-file", "-t", obj) is not None

    def snapshot(self) -> str:
        """The id of a git tree holding the workspace as it is now."""
        with tempfile.TemporaryDirectory(prefix="bcce-index-") as scratch:
            index = Path(scratch) / "index"
            # A copy of the repository's index makes `add` re-hash only what changed.
            real = self.git("rev-parse", "--git-path", "index").decode().strip()
            source = Path(real) if os.path.isabs(real) else self.workspace / real
            if source.is_file():
                shutil.copy2(source, index)  # its mtime keeps git's racy-clean check honest
            # A pathspec naming an ignored folder makes `git add` fail: only the others.
            excluded = [
                f":(exclude,top){path}"
                for path in self.exclude
                if self.git_ok("check-ignore", "--", path) is None
            ]
            self.git("add", "--all", "--", ".", *excluded, index=index)
            return self.git("write-tree", index=index).decode().strip()

    def diff(self, before: str, after: str) -> bytes:
        """The change from tree before to tree after, as a binary-safe git patch."""
        return self.git("diff", "--binary", "--no-renames", "--full-index", before, after)

    def changes(self, before: str, after: str) -> list[Change]:
        """The files that differ between two trees, with line counts."""
        statuses: dict[str, str] = {}
        raw = self.git("diff", "--name-status", "--no-renames", "-z", before, after)
        fields = raw.decode("utf-8", "surrogateescape").split("\0")
        for status, path in zip(fields[::2], fields[1::2], strict=False):
            statuses[path] = status
        found: list[Change] = []
        raw = self.git("diff", "--numstat", "--no-renames", "-z", before, after)
        for entry in raw.decode("utf-8", "surrogateescape").split("\0"):
            if not entry:
                continue
            added, removed, path = entry.split("\t", 2)
            binary = added == "-"
            found.append(
                Change(
                    path,
                    statuses.get(path, "M"),
                    0 if binary else int(added),
                    0 if binary else int(removed),
                    binary,
                )
            )
        return found

    def _prune(self, folder: Path) -> None:
        # Folders the step created and left empty once its files are gone go too.
        root = self.workspace.resolve()
        while folder.resolve() != root and folder.resolve().is_relative_to(root):
            try:
                folder.rmdir()
            except OSError:  # not empty (or not there): stop
                return
            folder = folder.parent

    def restore(self, before: str, paths: list[str]) -> None:
        """Put each of paths back as it was in tree before (deleting those it did not have)."""
        if not paths:
            return
        existed = set(
            self.git("ls-tree", "-r", "-z", "--name-only", before, "--", *paths)
            .decode("utf-8", "surrogateescape")
            .split("\0")
        )
        for path in paths:
            if path not in existed:
                target = self.workspace / path
                if target.is_symlink() or target.is_file():
                    target.unlink()
                self._prune(target.parent)
        back = [p for p in paths if p in existed]
        if back:
            with tempfile.TemporaryDirectory(prefix="bcce-restore-") as scratch:
                index = Path(scratch) / "index"
                self.git("read-tree", before, index=index)
                self.git("checkout-index", "--force", "--", *back, index=index)


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
WORKSPACE_PATCH = "workspace.patch"
"""The uncommitted changes a run started from, relative to its base commit (run folder)."""


def runs_root(run_dir: Path, workspace: Path) -> Path:
    """The folder holding runs (``.bcce_runs``), or the run's own when it sits directly in
    the workspace: what snapshots leave out."""
    return run_dir.parent if run_dir.parent.resolve() != workspace.resolve() else run_dir


def repository_top(path: Path) -> Path | None:
    """The top folder of the git working tree holding path, or None outside one."""
    if shutil.which("git") is None:
        return None
    found = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=False,
    )
    return Path(found.stdout.strip()).resolve() if found.returncode == 0 else None


def capture(workspace: Path, run_dir: Path) -> Origin | None:
    """Record where a run starts: the repository, its HEAD and the working tree as a tree.

    Writes the uncommitted changes (tracked and untracked, .gitignore respected) to
    ``<run_dir>/workspace.patch`` for hosts that cannot read the repository's objects.
    None when the workspace is not in a git repository (steps then work in place).
    """
    top = repository_top(workspace)
    if top is None:
        return None
    skip = runs_root(run_dir, top).resolve()
    tracker = Tracker(
        top, None, (skip.relative_to(top).as_posix(),) if skip.is_relative_to(top) else ()
    )
    start = tracker.snapshot()
    head = tracker.git_ok("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    base_tree = (
        tracker.git("rev-parse", f"{head}^{{tree}}").decode().strip() if head else EMPTY_TREE
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / WORKSPACE_PATCH).write_bytes(tracker.diff(base_tree, start))
    subdir = workspace.resolve().relative_to(top).as_posix()
    return Origin(
        repo=str(top),
        subdir="" if subdir == "." else subdir,
        base_commit=head,
        start_tree=start,
        remote_url=tracker.git_ok("config", "--get", "remote.origin.url"),
    )
