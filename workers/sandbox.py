"""Run one external command with a time limit, a cancel switch and capped output files.

The command runs from an argv (never a shell) in its own session, so on timeout or cancel the
whole process group is stopped: SIGTERM, a grace period, then SIGKILL. Whatever is left in the
group after the main process ends is killed too, so background children cannot outlive the step.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_CANCEL_POLL_SECONDS = 0.05
_READ_CHUNK_BYTES = 64 * 1024
_READER_POLL_MS = 100
# Once the process group is dead, what is left in the pipes drains in milliseconds; a reader
# still busy after this long is fed by a process that escaped the group (setsid), so give up.
_PIPE_DRAIN_SECONDS = 2.0


class CommandError(Exception):
    """Raised when the command cannot start at all: executable missing or unusable, bad cwd."""


@dataclass(frozen=True)
class CommandResult:
    """How a command run by :func:`run_command` ended, and how much output it wrote."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    cancelled: bool
    duration_seconds: float
    stdout_bytes: int
    stderr_bytes: int
    stdout_truncated: bool
    stderr_truncated: bool

    @property
    def ok(self) -> bool:
        """Whether the command exited 0 on its own."""
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


class _Capture(threading.Thread):
    """Drains one pipe into a file, keeping at most ``cap`` bytes but counting all of them."""

    def __init__(self, pipe: IO[bytes], out: IO[bytes], cap: int) -> None:
        super().__init__(name=f"bcce-capture-{out.name}", daemon=True)
        self._pipe = pipe
        self._out = out
        self._cap = cap
        self.total = 0
        self.abandon = threading.Event()

    def run(self) -> None:
        fd = self._pipe.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            # Polling with a timeout, rather than blocking in read(), is what lets us stop
            # reading a pipe that an escaped grandchild keeps open.
            while not self.abandon.is_set():
                if not poller.poll(_READER_POLL_MS):
                    continue
                chunk = os.read(fd, _READ_CHUNK_BYTES)
                if not chunk:
                    break
                room = self._cap - self.total
                if room > 0:
                    self._out.write(chunk[:room])
                self.total += len(chunk)
            if self.truncated:
                self._out.write(f"\n[bcce: output truncated after {self._cap} bytes]\n".encode())
        finally:
            self._out.close()
            self._pipe.close()

    @property
    def truncated(self) -> bool:
        """Whether more was written than the cap allowed into the file."""
        return self.total > self._cap


def _resolve_executable(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> str:
    if not argv:
        raise CommandError("empty command")
    if not cwd.is_dir() or not os.access(cwd, os.X_OK):
        raise CommandError(f"working directory is not usable: '{cwd}'")
    name = argv[0]
    if "/" in name:
        # The child resolves a relative path against cwd, so check the same file.
        candidate = cwd / name
        if not candidate.is_file():
            raise CommandError(f"command not found: {name!r}")
        if not os.access(candidate, os.X_OK):
            raise CommandError(f"command is not executable: {name!r}")
        return name
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise CommandError(f"command not found: {name!r} (not on PATH)")
    return os.path.abspath(found)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _wait_or_stop_reason(
    proc: subprocess.Popen[bytes], deadline: float, cancel: threading.Event | None
) -> str | None:
    """Wait for the process; return why it must be stopped, or None once it has exited."""
    while True:
        if cancel is not None and cancel.is_set():
            return "cancelled"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timed out"
        step = remaining if cancel is None else min(remaining, _CANCEL_POLL_SECONDS)
        try:
            proc.wait(timeout=step)
        except subprocess.TimeoutExpired:
            continue
        return None


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _finish_captures(captures: list[_Capture]) -> None:
    deadline = time.monotonic() + _PIPE_DRAIN_SECONDS
    for capture in captures:
        capture.join(max(0.0, deadline - time.monotonic()))
    for capture in captures:
        if capture.is_alive():
            log.warning("%s: pipe held open outside the process group; closing it", capture.name)
            capture.abandon.set()
    for capture in captures:
        capture.join()


def run_command(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_seconds: float,
    stdout_path: Path,
    stderr_path: Path,
    output_cap_bytes: int = 1024 * 1024,
    kill_grace_seconds: float = 5.0,
    cancel: threading.Event | None = None,
) -> CommandResult:
    """Run ``argv`` in ``cwd`` with exactly ``env``, capturing capped stdout/stderr to files.

    The process group is stopped after ``timeout_seconds`` or once ``cancel`` is set (SIGTERM,
    then SIGKILL after ``kill_grace_seconds``); anything left in the group when the main process
    ends is killed. Raises :class:`CommandError` when the command cannot be started.
    """
    executable = _resolve_executable(argv, cwd, env)
    for path in (stdout_path, stderr_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as opened:
        stdout_file = opened.enter_context(stdout_path.open("wb"))
        stderr_file = opened.enter_context(stderr_path.open("wb"))
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(argv),
                executable=executable,
                cwd=cwd,
                env=dict(env),
                shell=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        opened.pop_all()
    assert proc.stdout is not None and proc.stderr is not None
    captures = [
        _Capture(proc.stdout, stdout_file, output_cap_bytes),
        _Capture(proc.stderr, stderr_file, output_cap_bytes),
    ]
    for capture in captures:
        capture.start()

    reason: str | None = None
    try:
        reason = _wait_or_stop_reason(proc, started + timeout_seconds, cancel)
        if reason is not None:
            log.warning("pid %d %s; stopping its process group", proc.pid, reason)
            _stop(proc, kill_grace_seconds)
    finally:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        duration = time.monotonic() - started
        _finish_captures(captures)

    returncode = proc.returncode
    return CommandResult(
        exit_code=returncode if returncode >= 0 else None,
        signal=-returncode if returncode < 0 else None,
        timed_out=reason == "timed out",
        cancelled=reason == "cancelled",
        duration_seconds=duration,
        stdout_bytes=captures[0].total,
        stderr_bytes=captures[1].total,
        stdout_truncated=captures[0].truncated,
        stderr_truncated=captures[1].truncated,
    )
