"""What a worker process keeps between tasks: the run store, parsed workflows, executors."""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from bcce import loader, orgpolicy, policy
from bcce.artifacts import LocalArtifactStore, store_for
from bcce.gate import GateKeys, keys_for
from bcce.records import RunRecord
from bcce.state import RunStore
from bcce.steptypes import Executor, StepType
from bcce.workflow import Step, Workflow
from workers.cancel import CancelWatch

if TYPE_CHECKING:
    from bcce.celery_app import BcceCelery

# Worker variables a step inherits; everything else (AWS keys, tokens, BCCE_*) is dropped.
INHERITED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
)
WORKFLOW_CACHE = 256


class Runtime:
    """Per-app worker state, created lazily in each worker process."""

    def __init__(self, app: BcceCelery) -> None:
        settings = app.bcce_settings
        self.types = app.step_types
        self.store = RunStore.from_url(settings.effective_state_url, settings.run_ttl_seconds)
        self.limits = policy.Limits.of(settings)
        self.output_cap_bytes = settings.output_cap_bytes
        self.cancel_watch = CancelWatch(self.store)
        self.grant_ttl_seconds = settings.gate_grant_ttl_seconds
        self.workspace_cache = settings.workspace_cache
        self.resources = {
            "cpu_seconds": settings.step_cpu_seconds,
            "memory_mb": settings.step_memory_mb,
            "file_size_mb": settings.step_file_size_mb,
            "open_files": settings.step_open_files,
            "processes": settings.step_processes,
        }
        self._settings = settings
        self._workflows: OrderedDict[str, Workflow] = OrderedDict()
        self._lock = threading.Lock()

    def org_rules(self, workflow: Workflow) -> orgpolicy.Rules | None:
        """The org policy's rules for the workflow's team (re-read when the file changes);
        PolicyFileError when it cannot be used."""
        org = orgpolicy.current(self._settings.policy_file)
        return org.for_team(workflow.env.labels().get("team")) if org else None

    @functools.cached_property
    def keys(self) -> GateKeys:
        """Gate keys, loaded on first use (a key problem fails the task, and so the run)."""
        return keys_for(self._settings)

    def workflow(self, run_id: str) -> Workflow:
        """The run's workflow; snapshots never change, so each is parsed once a process."""
        with self._lock:
            if run_id in self._workflows:
                self._workflows.move_to_end(run_id)
                return self._workflows[run_id]
        workflow = loader.from_snapshot(self.store.snapshot(run_id), self.types)
        with self._lock:
            self._workflows[run_id] = workflow
            while len(self._workflows) > WORKFLOW_CACHE:
                self._workflows.popitem(last=False)
        return workflow

    def artifacts(self, run: RunRecord) -> LocalArtifactStore:
        """The run's artifact store (its local folder is where steps write)."""
        return store_for(run, self._settings, submitter=self._settings.embedded)

    def mirror(self, run_id: str) -> None:
        """Refresh run-state.json from the store."""
        run, steps = self.store.run_with_steps(run_id)
        self.artifacts(run).mirror(run, steps, self.store.audit_lines(run_id))


_runtimes: dict[tuple[int, int], Runtime] = {}
_runtimes_lock = threading.Lock()


def runtime(app: BcceCelery) -> Runtime:
    """The runtime of app in this process (made after fork, so connections are not shared)."""
    key = (id(app), os.getpid())
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = Runtime(app)
        return _runtimes[key]


@functools.cache
def executor(kind: StepType) -> Executor:
    """The step type's executor, imported once."""
    return kind.load_executor()


def resources(defaults: Mapping[str, int | None], step: Step) -> dict[str, int]:
    """The step's resource limits: the tighter of the worker's and the step policy's."""
    asked = step.policy.resources if step.policy and step.policy.resources else None
    limits: dict[str, int] = {}
    for name, default in defaults.items():
        wanted = getattr(asked, name, None) if asked else None
        chosen = [v for v in (default, wanted) if v is not None]
        if chosen:
            limits[name] = min(chosen)
    return limits


def step_env(
    run: RunRecord,
    workflow: Workflow,
    step_id: str,
    step_dir: Path,
    source: dict[str, str],
    passed: tuple[str, ...] = (),
) -> dict[str, str]:
    """The environment a step runs with: a scrubbed base (plus what the org policy passes),
    the workflow's env, run ids."""
    env = {k: source[k] for k in (*INHERITED_ENV, *passed) if k in source}
    env.setdefault("PATH", os.defpath)
    env.update(workflow.env.variables())
    env.update(
        {
            "BCCE_RUN_ID": run.id,
            "BCCE_STEP_ID": step_id,
            "BCCE_RUN_DIR": run.run_dir,
            "BCCE_STEP_DIR": str(step_dir),
            "BCCE_WORKSPACE": run.workspace,
        }
    )
    return env
