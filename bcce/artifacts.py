"""Run artifacts on the local file system: ``<run_dir>/run-state.json`` and one folder a step.

Layout (ARCHITECTURE.md): ``<run_dir>/<step_id>/{stdout.txt, stderr.txt, output.txt,
policy.json, metrics.json}``. Other stores (s3://) plug in through the
``bcce.artifact_stores`` entry-point group.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bcce.records import RunRecord, StepRecord, current_step

RUN_STATE = "run-state.json"
WORKFLOW_SNAPSHOT = "workflow.json"
STDOUT, STDERR, OUTPUT = "stdout.txt", "stderr.txt", "output.txt"
POLICY, METRICS = "policy.json", "metrics.json"


class LocalArtifactStore:
    """Artifacts of one run in a directory (``file://`` or a plain path)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

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
        """The step's artifacts by name, with their paths."""
        with os.scandir(self.run_dir / step_id) as entries:
            return {e.name: e.path for e in sorted(entries, key=lambda e: e.name) if e.is_file()}

    def write_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Keep the workflow as the run was submitted (``resume`` and ``approve`` of an
        embedded run read it back)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_dir / WORKFLOW_SNAPSHOT, json.dumps(snapshot, indent=2) + "\n")

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

    def mirror(self, run: RunRecord, steps: list[StepRecord]) -> None:
        """Write run-state.json: the run record with its steps, as Redis holds them."""
        state = {
            **run.model_dump(mode="json"),
            "current_step": current_step(steps),
            "steps": [s.model_dump(mode="json") for s in steps],
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_dir / RUN_STATE, json.dumps(state, indent=2) + "\n")

    def read_state(self) -> tuple[RunRecord, list[StepRecord]]:
        """The run and its steps as last mirrored to run-state.json."""
        state: dict[str, Any] = json.loads((self.run_dir / RUN_STATE).read_text("utf-8"))
        raw_steps = state.get("steps")
        steps = [StepRecord.model_validate(s) for s in raw_steps or []]
        return RunRecord.model_validate(state), steps


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
