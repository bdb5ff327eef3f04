"""Run artifacts: ``<run_dir>/run-state.json`` and one folder a step.

Layout (ARCHITECTURE.md): ``<run_dir>/<step_id>/{stdout.txt, stderr.txt, output.txt,
policy.json, metrics.json}``. Steps always write into a local folder; with a remote store
(``BCCE_ARTIFACTS_URL=s3://bucket/prefix``, or a plugin's scheme from the
``bcce.artifact_stores`` entry-point group) that folder is a per-host cache which is
``pull``-ed before a step and ``push``-ed after it, so hosts share nothing but the store.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from bcce.errors import UsageError
from bcce.records import RunRecord, StepRecord, current_step
from bcce.settings import Settings
from bcce.steptypes import ARTIFACT_STORES_GROUP

RUN_STATE = "run-state.json"
WORKFLOW_SNAPSHOT = "workflow.json"
AUDIT_LOG = "audit.jsonl"
STDOUT, STDERR, OUTPUT = "stdout.txt", "stderr.txt", "output.txt"
POLICY, METRICS = "policy.json", "metrics.json"


class LocalArtifactStore:
    """Artifacts of one run in a directory (``file://`` or a plain path).

    Remote stores subclass it: the directory is then their local cache.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def pull(self) -> None:
        """Make the local folder hold every artifact the store has (remote stores)."""

    def push(self, step_id: str | None = None) -> None:
        """Send a step's files (or the run's own with None) to the store (remote stores)."""

    def location(self, step_id: str, name: str) -> str:
        """Where an artifact lives, as a path or URL."""
        return str(self.run_dir / step_id / name)

    def step_dir(self, step_id: str) -> Path:
        """The folder of a step's artifacts, created on first use."""
        path = self.run_dir / step_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_json(self, step_id: str, name: str, data: Any) -> Path:
        """Write one JSON artifact of a step, creating its folder if need be."""
        path = self.run_dir / step_id / name
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        try:
            path.write_text(text, encoding="utf-8")
        except FileNotFoundError:
            self.step_dir(step_id)
            path.write_text(text, encoding="utf-8")
        return path

    def listing(self, step_id: str) -> dict[str, str]:
        """The step's artifacts by name, with where each lives."""
        return {name: self.location(step_id, name) for name in self.sizes(step_id)}

    def write_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Keep the workflow as the run was submitted (``resume`` and ``approve`` of an
        embedded run read it back)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_dir / WORKFLOW_SNAPSHOT, json.dumps(snapshot, indent=2) + "\n")
        self.push()

    def read_snapshot(self) -> dict[str, Any]:
        """The workflow snapshot written at submission."""
        data: dict[str, Any] = json.loads((self.run_dir / WORKFLOW_SNAPSHOT).read_text("utf-8"))
        return data

    def read_bytes(self, step_id: str | None, name: str) -> bytes:
        """One artifact of a step (or of the run itself when step_id is None)."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError("an artifact name is a file name")
        folder = self.run_dir / step_id if step_id else self.run_dir
        return (folder / name).read_bytes()

    def sizes(self, step_id: str | None) -> dict[str, int]:
        """The files of a step (or the run's own), with their sizes in bytes."""
        folder = self.run_dir / step_id if step_id else self.run_dir
        try:
            with os.scandir(folder) as entries:
                found = [e for e in entries if e.is_file() and not e.name.startswith(".")]
                return {e.name: e.stat().st_size for e in sorted(found, key=lambda e: e.name)}
        except FileNotFoundError:
            return {}

    def mirror(
        self, run: RunRecord, steps: list[StepRecord], audit: list[str] | None = None
    ) -> None:
        """Write run-state.json (the run record with its steps, as Redis holds them) and
        audit.jsonl (the run's audit log, whose length and last hash run-state records)."""
        state = {
            **run.model_dump(mode="json"),
            "current_step": current_step(steps),
            "steps": [s.model_dump(mode="json") for s in steps],
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if audit is not None:
            from bcce.audit import head_of  # not at import: it loads cryptography

            state["audit"] = head_of(audit)
            write_atomic(self.run_dir / AUDIT_LOG, "".join(f"{line}\n" for line in audit))
        write_atomic(self.run_dir / RUN_STATE, json.dumps(state, indent=2) + "\n")
        self.push()

    def read_audit(self) -> list[str]:
        """The audit log kept with the run (empty when there is none)."""
        try:
            text = (self.run_dir / AUDIT_LOG).read_text("utf-8")
        except FileNotFoundError:
            return []
        return text.splitlines()

    def read_state(self) -> tuple[RunRecord, list[StepRecord]]:
        """The run and its steps as last mirrored to run-state.json."""
        state: dict[str, Any] = json.loads((self.run_dir / RUN_STATE).read_text("utf-8"))
        raw_steps = state.get("steps")
        steps = [StepRecord.model_validate(s) for s in raw_steps or []]
        return RunRecord.model_validate(state), steps


def store_for(run: RunRecord, settings: Settings, *, submitter: bool = True) -> LocalArtifactStore:
    """The artifact store of a run: its folder, or the remote store its URL names.

    With a remote store the local folder is a cache: the run's own folder where the
    submitting side can see it (the CLI, embedded workers), else one under the host's
    cache root (distributed workers, which share nothing but the store).
    """
    url = run.artifacts_url
    if not url or url.startswith("file://"):
        return LocalArtifactStore(Path(run.run_dir))
    here = Path(run.run_dir)
    cache = here if submitter and here.is_dir() else settings.artifacts_cache / run.id
    scheme = url.partition("://")[0]
    kinds = {ep.name: ep for ep in entry_points(group=ARTIFACT_STORES_GROUP)}
    if scheme not in kinds or scheme == "file":
        raise UsageError(
            f"no artifact store for {scheme}:// URLs (run {run.id}): install the plugin "
            f"that provides it; known: {', '.join(sorted(kinds))}"
        )
    factory = kinds[scheme].load()
    store: LocalArtifactStore = factory(url, cache, settings)
    return store


def write_atomic(path: Path, text: str) -> None:
    """Replace path with text so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
