"""Tests for bcce.patches: a patch read by git, and every way the policy refuses one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bcce import patches, policy
from bcce.patches import PatchError
from bcce.workspace import Tracker


def git(cwd: Path, *args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        input=input,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    ws = tmp_path / "repo"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("a = 1\n")
    (ws / "README.md").write_text("hello\n")
    git(ws, "init", "-q")
    git(ws, "add", ".")
    git(ws, "commit", "-qm", "init")
    return ws


def tree(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD^{tree}").decode().strip()


def change(repo: Path, edit: dict[str, str | None]) -> bytes:
    """A patch made the honest way: edit files, diff, put them back."""
    for path, text in edit.items():
        target = repo / path
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached", "--binary", "--full-index")
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-qfd")
    return patch


def limits(**policy_keys: object) -> policy.Effective:
    return policy.Effective(
        timeout_seconds=60,
        cmd_allowlist=None,
        allowed_paths=policy_keys.get("allowed_paths"),  # type: ignore[arg-type]
        max_files=policy_keys.get("max_files"),  # type: ignore[arg-type]
        max_edits=policy_keys.get("max_edits"),  # type: ignore[arg-type]
    )


def test_an_honest_patch_is_read_and_gives_the_tree_git_would(repo: Path) -> None:
    patch = change(repo, {"src/app.py": "a = 2\nb = 3\n", "docs/new.md": "x\n"})
    found = patches.inspect(Tracker(repo), patch, tree(repo))

    assert {(f.path, f.added, f.removed) for f in found.files} == {
        ("src/app.py", 2, 1),
        ("docs/new.md", 1, 0),
    }
    assert found.lines == 4
    assert found.sha256 == patches.digest(patch)
    assert patches.denial(found, limits()) is None
    # The tree is exactly the repository with the change applied.
    (repo / "src" / "app.py").write_text("a = 2\nb = 3\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "new.md").write_text("x\n")
    git(repo, "add", "-A")
    assert found.tree == git(repo, "write-tree").decode().strip()


@pytest.mark.parametrize(
    ("rules", "path", "refused"),
    [
        (["src/**"], "src/app.py", False),
        (["src/**"], "README.md", True),
        (["src/**", "!src/secrets/**"], "src/secrets/key.py", True),
        (["*.py"], "src/app.py", False),
        (["/*.py"], "src/app.py", True),  # anchored: top level only
    ],
)
def test_allowed_paths_are_gitignore_rules(
    repo: Path, rules: list[str], path: str, refused: bool
) -> None:
    found = patches.inspect(Tracker(repo), change(repo, {path: "changed\n"}), tree(repo))
    reason = patches.denial(found, limits(allowed_paths=tuple(rules)))
    assert (reason is not None) == refused
    if refused:
        assert reason == f"{path!r} is outside policy.allowed_paths {rules}"


def test_counts_are_limited(repo: Path) -> None:
    patch = change(repo, {"src/app.py": "a = 2\n", "README.md": "bye\n", "x.txt": "1\n2\n"})
    found = patches.inspect(Tracker(repo), patch, tree(repo))
    assert patches.denial(found, limits(max_files=2)) == "3 files changed, policy.max_files is 2"
    assert patches.denial(found, limits(max_edits=5)) == "6 lines changed, policy.max_edits is 5"
    assert patches.denial(found, limits(max_files=3, max_edits=6)) is None


def test_binary_changes_need_the_policy_to_allow_them(repo: Path) -> None:
    found = patches.inspect(Tracker(repo), change(repo, {"logo.png": "\0PNG\0"}), tree(repo))
    assert found.files[0].binary
    assert patches.denial(found, limits()) == (
        "'logo.png' is a binary change (set policy.allow_binary: true to allow)"
    )
    assert patches.denial(found, limits(), allow_binary=True) is None


@pytest.mark.parametrize(
    ("target", "refused"),
    [("app.py", False), ("../README.md", False), ("/etc/passwd", True), ("../../x", True)],
)
def test_symlinks_may_not_point_outside_the_repository(
    repo: Path, target: str, refused: bool
) -> None:
    (repo / "src" / "link").symlink_to(target)
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached", "--binary")
    git(repo, "reset", "-q", "--hard")
    (repo / "src" / "link").unlink(missing_ok=True)
    found = patches.inspect(Tracker(repo), patch, tree(repo))
    assert found.symlinks == {"src/link": target}
    reason = patches.denial(found, limits())
    assert (reason is not None) == refused
    if refused:
        assert reason == f"symlink 'src/link' points outside the repository ({target!r})"


HOSTILE = {
    "parent": ("../outside.txt", "leaves the workspace"),
    "absolute": ("/tmp/owned.txt", ""),
    "git config": (".git/config", ""),
    "git hooks, folded case": (".GIT/hooks/post-checkout", ""),
    "nested git": ("sub/.git/config", ""),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_paths_are_refused_by_git_or_the_policy(repo: Path, name: str) -> None:
    path, _ = HOSTILE[name]
    patch = (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..e69de29\n"
        f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+owned\n"
    ).encode()
    try:
        found = patches.inspect(Tracker(repo), patch, tree(repo))
    except PatchError:
        return  # git itself will not write it
    reason = patches.denial(found, limits())
    assert reason is not None, f"{path} was allowed"
    assert not (repo.parent / "outside.txt").exists()


def test_a_rename_counts_both_names(repo: Path) -> None:
    patch = (
        b"diff --git a/src/app.py b/.git/hooks/pre-commit\nsimilarity index 100%\n"
        b"rename from src/app.py\nrename to .git/hooks/pre-commit\n"
    )
    try:
        found = patches.inspect(Tracker(repo), patch, tree(repo))
    except PatchError:
        return
    assert {f.path for f in found.files} >= {"src/app.py", ".git/hooks/pre-commit"}
    assert patches.denial(found, limits()) == "'.git/hooks/pre-commit' is inside a .git folder"


def test_a_patch_that_does_not_apply_says_so(repo: Path) -> None:
    patch = change(repo, {"src/app.py": "a = 2\n"})
    (repo / "src" / "app.py").write_text("something else\n")
    git(repo, "commit", "-qam", "moved on")
    with pytest.raises(PatchError, match=r"^the patch does not apply: "):
        patches.inspect(Tracker(repo), patch, tree(repo))
    with pytest.raises(PatchError, match=r"^git cannot read the patch: "):
        patches.inspect(Tracker(repo), b"this is not a patch\n", tree(repo))


def test_the_workspace_folder_bounds_the_paths(repo: Path) -> None:
    found = patches.inspect(Tracker(repo), change(repo, {"README.md": "x\n"}), tree(repo))
    assert patches.denial(found, limits(), subdir="src") == (
        "'README.md' is outside the workspace folder 'src'"
    )
    found = patches.inspect(Tracker(repo), change(repo, {"src/app.py": "x\n"}), tree(repo))
    assert patches.denial(found, limits(allowed_paths=("app.py",)), subdir="src") is None


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_no_path_leaves_the_workspace_or_enters_git(name: str) -> None:
    reason = policy.path_denial(name, None)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    escapes = name.startswith("/") or ".." in parts
    enters_git = any(p.rstrip(". ").lower() in (".git", "git~1") for p in parts)
    if escapes or enters_git:
        assert reason is not None
