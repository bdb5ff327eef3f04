"""Hostile commands against resource limits, end to end: the step fails, the run goes on
no further, the machine is unharmed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from bcce.workflow import Step
from tests.conftest import base_env, bcce
from workers.runtime import resources


def test_the_tighter_of_worker_and_policy_limits_wins() -> None:
    step = Step.model_validate(
        {
            "id": "s",
            "type": "cmd",
            "policy": {"resources": {"memory_mb": 512, "open_files": 99999, "processes": 50}},
        }
    )
    worker = {
        "cpu_seconds": None,
        "memory_mb": 1024,
        "file_size_mb": 4096,
        "open_files": 4096,
        "processes": None,
    }
    assert resources(worker, step) == {
        "memory_mb": 512,
        "file_size_mb": 4096,
        "open_files": 4096,  # a workflow cannot widen the worker's limit
        "processes": 50,
    }


def test_a_memory_hog_and_a_disk_filler_fail_their_steps(tmp_path: Path) -> None:
    (tmp_path / "wf.yml").write_text(
        textwrap.dedent(
            """\
            version: 1
            workflow: hostile
            steps:
              - id: hog
                type: cmd
                command: python3 -c "b = bytearray(2 * 1024 ** 3)"
                on_error: continue
                policy:
                  resources: {memory_mb: 300}
              - id: filler
                type: cmd
                command: python3 -c "open('big', 'wb').write(bytes(64 * 1024 ** 2))"
                policy:
                  resources: {file_size_mb: 1}
            """
        )
    )
    result = bcce(
        "workflow", "run", str(tmp_path / "wf.yml"), "--json", env=base_env(), cwd=tmp_path
    )
    assert result.code == 1, result.err
    summary = json.loads(result.out.splitlines()[-1])
    steps = {s["id"]: s for s in summary["steps"]}
    assert steps["hog"]["status"] == "failed" and steps["hog"]["continued"]
    assert "MemoryError" in (Path(summary["run_dir"]) / "hog" / "stderr.txt").read_text()
    assert steps["filler"]["status"] == "failed"
    assert (tmp_path / "big").stat().st_size <= 1024 * 1024
