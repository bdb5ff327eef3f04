"""``apply_diff`` steps: land the run's changes in the repository, behind an approval.

The diff is the combined change of the steps before (default), one step's (``from``), or a
patch from the workflow (``patch_file``). It is written to ``proposed.diff``, read by git
and checked against the policy before anything is applied; unless the step says
``approve: true`` (or the run was started with ``--approve-all``) the run then stops,
awaiting a person, with the diff's SHA-256 recorded. ``bcce workflow approve`` binds the
approval to that hash, and the step applies only a diff that still hashes to it.

Targets: ``worktree`` applies to the repository's working tree, ``branch`` commits onto
``bcce/<run_id>`` without touching the working tree, ``patch`` only keeps the patch.
Applying again what was already applied is a no-op.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from bcce import patches, policy
from bcce.artifacts import OUTPUT, STDERR
from bcce.patches import Inspection, PatchError
from bcce.records import Origin
from bcce.steptypes import StepContext, StepOutcome
from bcce.workflow import ApplyDiffStep
from bcce.workspace import Tracker, WorkspaceError

PROPOSED = "proposed.diff"
APPLIED = "applied.json"
CHANGES = "changes.diff"


def execute(ctx: StepContext) -> StepOutcome:
    """Check the diff, wait for approval if it needs one, then apply it to the target."""
    step = ctx.step
    assert isinstance(step, ApplyDiffStep)
    origin, root = ctx.origin, ctx.workspace_root
    if origin is None or root is None or ctx.start_tree is None:
        return _failed(
            ctx,
            "apply_diff needs a run started in a git repository (steps then work in a "
            "copy of it); this run's steps changed its workspace in place",
        )
    clone = Tracker(root)
    try:
        patch = _patch(ctx, step, clone, origin)
        (ctx.step_dir / PROPOSED).write_bytes(patch)
        if not patch.strip():
            _say(ctx, "nothing to apply: the diff is empty")
            return StepOutcome(ok=True, metrics={"files": 0, "lines": 0, "applied": False})
        found = patches.inspect(clone, patch, origin.start_tree)
    except (PatchError, WorkspaceError, OSError) as exc:
        return _failed(ctx, str(exc))
    seconds = max(1, math.ceil(ctx.timeout_seconds))
    effective = ctx.policy or policy.effective(step, policy.Limits(seconds, seconds))
    allow_binary = bool(step.policy and step.policy.allow_binary)
    reason = patches.denial(found, effective, allow_binary, origin.subdir)
    metrics: dict[str, Any] = {
        "sha256": found.sha256,
        "files": len(found.files),
        "lines": found.lines,
        "target": step.target,
    }
    if reason:
        return _failed(ctx, f"policy violation: {reason}; nothing was applied", metrics)

    approval = ctx.approval or {}
    approver = approval.get("approved_by")
    if approver and approval.get("approved_sha") == found.sha256:
        refused = policy.approver_denial(effective, str(approver), ctx.submitted_by)
        if refused:
            return _failed(ctx, f"policy violation: the approval is not valid: {refused}", metrics)
    waived = (step.approve or ctx.approve_all) and not effective.approval_required
    if not (waived or approval.get("approved_sha") == found.sha256):
        request = {**metrics, "paths": [f.path for f in found.files][:100]}
        if approval.get("approved_sha"):
            request["previous_sha"] = approval["approved_sha"]
        _say(
            ctx,
            f"awaiting approval of {len(found.files)} files (+/-{found.lines} lines), "
            f"sha256 {found.sha256}: `bcce workflow diff {ctx.run_id} {step.id}`, then "
            f"`bcce workflow approve {ctx.run_id} {step.id} --sha {found.sha256[:12]}`",
        )
        return StepOutcome(ok=False, awaiting_approval=request, metrics=metrics)

    done = _read_json(ctx.step_dir / APPLIED)
    if done.get("sha256") == found.sha256 and done.get("target") == step.target:
        _say(ctx, f"already applied ({step.target}, sha256 {found.sha256}): nothing to do")
        return StepOutcome(ok=True, metrics={**metrics, **done, "applied": True})
    try:
        result = _apply(ctx, step, origin, found, patch)
    except (PatchError, WorkspaceError) as exc:
        return _failed(ctx, str(exc), metrics)
    record = {"sha256": found.sha256, "target": step.target, "applied_at": time.time(), **result}
    (ctx.step_dir / APPLIED).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return StepOutcome(ok=True, metrics={**metrics, **record, "applied": True})


def _patch(ctx: StepContext, step: ApplyDiffStep, clone: Tracker, origin: Origin) -> bytes:
    if step.patch is not None:
        return step.patch.encode()
    if step.from_step:
        assert ctx.run_dir is not None
        return (ctx.run_dir / step.from_step / CHANGES).read_bytes()
    assert ctx.start_tree is not None
    return clone.diff(origin.start_tree, ctx.start_tree)


def _apply(
    ctx: StepContext, step: ApplyDiffStep, origin: Origin, found: Inspection, patch: bytes
) -> dict[str, Any]:
    summary = f"{len(found.files)} files (+/-{found.lines} lines), sha256 {found.sha256}"
    if step.target == "patch":
        _say(ctx, f"patch kept as {ctx.step_dir / PROPOSED}: {summary}")
        return {}
    repo = Path(origin.repo)
    if not repo.is_dir():
        raise WorkspaceError(
            f"the repository {repo} is not on this host: run the diff pool where it is, "
            "or use target: patch"
        )
    tracker = Tracker(repo)
    if step.target == "branch":
        return _commit(ctx, tracker, origin, found, summary)
    try:
        tracker.git("apply", "--check", "--binary", input=patch)
    except WorkspaceError as exc:
        try:
            tracker.git("apply", "--check", "--reverse", "--binary", input=patch)
        except WorkspaceError:
            raise PatchError(
                f"the diff does not apply to the working tree {repo} (did it change since "
                f"the run started?): {str(exc).split(': ', 1)[-1]}"
            ) from None
        _say(ctx, f"already in the working tree {repo}: nothing to do ({summary})")
        return {"already": True}
    tracker.git("apply", "--binary", "--whitespace=nowarn", input=patch)
    _say(ctx, f"applied {summary} to the working tree {repo}")
    return {}


def _commit(
    ctx: StepContext, tracker: Tracker, origin: Origin, found: Inspection, summary: str
) -> dict[str, Any]:
    """Commit the run's result onto ``bcce/<run_id>``: the submitted tree plus the diff."""
    branch = f"bcce/{ctx.run_id}"
    ref = f"refs/heads/{branch}"
    if not tracker.has(found.tree):
        # Written in the run's copy; the repository needs the objects too.
        with tempfile.TemporaryDirectory(prefix="bcce-branch-") as scratch:
            index = Path(scratch) / "index"
            tracker.git("read-tree", origin.start_tree, index=index)
            tracker.git("apply", "--cached", "--binary", index=index, input=_read(ctx))
            tree = tracker.git("write-tree", index=index).decode().strip()
        if tree != found.tree:
            raise PatchError(f"the diff gives another tree in {tracker.workspace}: not committed")
    existing = tracker.git_ok("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if existing:
        if tracker.git_ok("rev-parse", f"{existing}^{{tree}}") == found.tree:
            _say(ctx, f"already committed on {branch} ({existing[:12]}): nothing to do")
            return {"branch": branch, "commit": existing, "already": True}
        raise PatchError(f"branch {branch} already exists with other content: not committed")
    parents = ["-p", origin.base_commit] if origin.base_commit else []
    message = f"bcce run {ctx.run_id}, step {ctx.step.id}\n\n{summary}\n"
    commit = tracker.git("commit-tree", found.tree, *parents, input=message.encode())
    sha = commit.decode().strip()
    tracker.git("update-ref", ref, sha, "")  # "" : only if the branch does not exist yet
    _say(ctx, f"committed {summary} as {sha[:12]} on {branch}")
    return {"branch": branch, "commit": sha}


def _read(ctx: StepContext) -> bytes:
    return (ctx.step_dir / PROPOSED).read_bytes()


def _say(ctx: StepContext, text: str) -> None:
    (ctx.step_dir / OUTPUT).write_text(text + "\n" if text else "", encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _failed(ctx: StepContext, error: str, metrics: dict[str, Any] | None = None) -> StepOutcome:
    (ctx.step_dir / STDERR).write_text(f"bcce: {error}\n", encoding="utf-8")
    _say(ctx, "")
    return StepOutcome(ok=False, error=error, metrics=metrics or {})
