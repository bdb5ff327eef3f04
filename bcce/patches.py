"""What a patch would do, read by git itself, and whether the policy lets it land.

A patch is never parsed by hand: ``git apply --numstat`` names the files as git will write
them, and applying it to a scratch index (never a working tree) gives the exact resulting
tree, whose entries show symlinks and submodules as git will create them.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bcce import policy
from bcce.workspace import Tracker, WorkspaceError

SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"


class PatchError(Exception):
    """Raised when a patch cannot be read or does not apply."""


@dataclass(frozen=True)
class FileChange:
    """One file a patch touches, as git reads it."""

    path: str
    added: int
    removed: int
    binary: bool


@dataclass(frozen=True)
class Inspection:
    """A patch, the files it changes and the tree it gives on top of a base tree."""

    sha256: str
    files: tuple[FileChange, ...]
    tree: str
    symlinks: dict[str, str]
    """Symlinks the patch creates or changes: path -> target."""
    submodules: tuple[str, ...]

    @property
    def lines(self) -> int:
        """Lines added plus lines removed."""
        return sum(f.added + f.removed for f in self.files)


def digest(patch: bytes) -> str:
    """The SHA-256 an approval is bound to."""
    return hashlib.sha256(patch).hexdigest()


def inspect(tracker: Tracker, patch: bytes, base_tree: str) -> Inspection:
    """Read patch with git and apply it to base_tree in a scratch index."""
    try:
        numstat = tracker.git("apply", "--numstat", "-z", "--binary", input=patch)
    except WorkspaceError as exc:
        raise PatchError(f"git cannot read the patch: {_reason(exc)}") from None
    files = _numstat(numstat)
    with tempfile.TemporaryDirectory(prefix="bcce-patch-") as scratch:
        index = Path(scratch) / "index"
        try:
            tracker.git("read-tree", base_tree, index=index)
            tracker.git(
                "apply", "--cached", "--binary", "--whitespace=nowarn", index=index, input=patch
            )
            tree = tracker.git("write-tree", index=index).decode().strip()
        except WorkspaceError as exc:
            raise PatchError(f"the patch does not apply: {_reason(exc)}") from None
    symlinks: dict[str, str] = {}
    submodules: list[str] = []
    raw = tracker.git("diff-tree", "-r", "-z", "--no-renames", base_tree, tree)
    fields = raw.decode("utf-8", "surrogateescape").split("\0")
    for meta, path in zip(fields[::2], fields[1::2], strict=False):
        _, new_mode, _, new_sha, status = meta.lstrip(":").split(" ")
        if status == "D":
            continue
        if new_mode == SYMLINK_MODE:
            target = tracker.git("cat-file", "blob", new_sha)
            symlinks[path] = target.decode("utf-8", "surrogateescape")
        elif new_mode == SUBMODULE_MODE:
            submodules.append(path)
    return Inspection(digest(patch), tuple(files), tree, symlinks, tuple(submodules))


def denial(
    found: Inspection, effective: policy.Effective, allow_binary: bool = False, subdir: str = ""
) -> str | None:
    """Why the policy refuses this patch, or None when it may be applied.

    Paths in the patch are relative to the repository's top; ``allowed_paths`` are relative
    to the workspace, which is the folder subdir of it.
    """
    for change in found.files:
        reason = policy.path_denial(change.path, None)
        if reason:
            return reason
        path = change.path
        if subdir:
            if not path.startswith(subdir.rstrip("/") + "/"):
                return f"{path!r} is outside the workspace folder {subdir!r}"
            path = path[len(subdir.rstrip("/")) + 1 :]
        reason = policy.change_denial(path, effective)
        if reason:
            return reason
        if change.binary and not allow_binary:
            return f"{change.path!r} is a binary change (set policy.allow_binary: true to allow)"
    for path, target in found.symlinks.items():
        if target.startswith("/") or os.path.isabs(target):
            return f"symlink {path!r} points outside the repository ({target!r})"
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if resolved == ".." or resolved.startswith("../"):
            return f"symlink {path!r} points outside the repository ({target!r})"
        if policy.path_denial(resolved, None):
            return f"symlink {path!r} points into .git ({target!r})"
    if found.submodules:
        return f"{found.submodules[0]!r} is a submodule change, which apply_diff never makes"
    if effective.max_files is not None and len(found.files) > effective.max_files:
        return f"{len(found.files)} files changed, policy.max_files is {effective.max_files}"
    if effective.max_edits is not None and found.lines > effective.max_edits:
        return f"{found.lines} lines changed, policy.max_edits is {effective.max_edits}"
    return None


def _numstat(raw: bytes) -> list[FileChange]:
    """``git apply --numstat -z``: ``added TAB removed TAB path NUL``; a rename or copy
    has an empty path followed by ``source NUL destination NUL``."""
    fields = raw.decode("utf-8", "surrogateescape").split("\0")
    files: list[FileChange] = []
    index = 0
    while index < len(fields) and fields[index]:
        added, removed, path = fields[index].split("\t", 2)
        index += 1
        names = [path]
        if not path:
            names = fields[index : index + 2]
            index += 2
        binary = added == "-"
        for name in names:
            files.append(
                FileChange(name, 0 if binary else int(added), 0 if binary else int(removed), binary)
            )
    return files


def _reason(exc: WorkspaceError) -> str:
    return str(exc).split(": ", 1)[-1]
