"""Run one external command with a time limit, a cancel switch and capped output files.

The command runs from an argv (never a shell) in its own session, so on timeout or cancel the
whole process group is stopped: SIGTERM, a grace period, then SIGKILL. Whatever is left in the
group after the main process ends is killed too, so background children cannot outlive the step.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import selectors
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

# How often a silent command is checked for exit, timeout and cancel.
_POLL_SECONDS = 0.05
_READ_CHUNK_BYTES = 64 * 1024
# Once the process group is dead, what is left in the pipes drains in milliseconds; a reader
# still busy after this long is fed by a process that escaped the group (setsid), so give up.
_PIPE_DRAIN_SECONDS = 2.0


@dataclass(frozen=True)
class Limits:
    """Resource limits of a command and every process it starts (``setrlimit``); None: none."""

    cpu_seconds: int | None = None
    memory_bytes: int | None = None
    """Address space (RLIMIT_AS)."""
    file_size_bytes: int | None = None
    open_files: int | None = None
    processes: int | None = None
    """RLIMIT_NPROC: counts every process of the user, and root is exempt from it."""

    def prlimit_options(self) -> list[str]:
        """The limits as options of util-linux ``prlimit`` (soft = hard)."""
        pairs = (
            ("cpu", self.cpu_seconds),
            ("as", self.memory_bytes),
            ("fsize", self.file_size_bytes),
            ("nofile", self.open_files),
            ("nproc", self.processes),
        )
        return [f"--{name}={value}" for name, value in pairs if value is not None]


@functools.cache
def _prlimit() -> str | None:
    return shutil.which("prlimit")


def _limited(argv: Sequence[str], executable: str, limits: Limits | None) -> tuple[list[str], str]:
    """argv run under prlimit, which sets the limits on itself and then execs the command:
    they hold from the command's first instruction, with no race and no code run between
    fork and exec in this (threaded) process."""
    options = limits.prlimit_options() if limits else []
    tool = _prlimit()
    if not options or tool is None:
        return list(argv), executable
    return [tool, *options, "--", executable, *argv[1:]], tool


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


class _Sink:
    """One output stream: keeps at most ``cap`` bytes in its file but counts all of them."""

    def __init__(self, out: IO[bytes], cap: int) -> None:
        self.out = out
        self.cap = cap
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        room = self.cap - self.total
        if room > 0:
            self.out.write(chunk[:room])
        self.total += len(chunk)

    def close(self) -> None:
        if self.truncated:
            self.out.write(f"\n[bcce: output truncated after {self.cap} bytes]\n".encode())
        self.out.close()

    @property
    def truncated(self) -> bool:
        """Whether more was written than the cap allowed into the file."""
        return self.total > self.cap


class _Pump:
    """Reads the child's pipes in the calling thread (no reader threads to start per step).

    Where the kernel offers a pidfd, the child's exit wakes the same ``select`` as its
    output, so a command's end is seen at once instead of by polling.
    """

    def __init__(self, pipes: dict[int, _Sink], pid: int) -> None:
        self.sinks = pipes
        self.selector = selectors.DefaultSelector()
        for fd in pipes:
            self.selector.register(fd, selectors.EVENT_READ)
        self.exit_fd: int | None = None
        try:
            self.exit_fd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll instead
            return
        self.selector.register(self.exit_fd, selectors.EVENT_READ)

    @property
    def open(self) -> bool:
        """Whether a pipe is still open."""
        return any(fd in self.sinks for fd in self.selector.get_map())

    def read(self, timeout: float) -> bool:
        """Move what is readable within timeout into the sinks; True once the child exited."""
        exited = False
        for key, _ in self.selector.select(timeout):
            fd = int(key.fd)
            if fd == self.exit_fd:
                exited = True
                continue
            chunk = os.read(fd, _READ_CHUNK_BYTES)
            if chunk:
                self.sinks[fd].feed(chunk)
            else:
                self.selector.unregister(fd)
                os.close(fd)
        return exited

    def drain(self, seconds: float) -> None:
        """Read until every pipe is at EOF, or give up after seconds (an escaped holder)."""
        self._forget_exit()
        deadline = time.monotonic() + seconds
        while self.open and time.monotonic() < deadline:
            self.read(max(0.0, deadline - time.monotonic()))
        if self.open:
            log.warning("output pipe held open outside the process group; closing it")
        self.close()

    def close(self) -> None:
        """Close every pipe and the sinks."""
        self._forget_exit()
        for key in list(self.selector.get_map().values()):
            self.selector.unregister(key.fd)
            os.close(int(key.fd))
        self.selector.close()
        for sink in self.sinks.values():
            sink.close()

    def _forget_exit(self) -> None:
        if self.exit_fd is not None:
            self.selector.unregister(self.exit_fd)
            os.close(self.exit_fd)
            self.exit_fd = None


@functools.cache
def _devnull() -> int:
    # One read-only /dev/null for every child's stdin, instead of an open per command.
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


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


def _set_limits(pid: int, limits: Limits) -> None:
    import resource

    pairs = (
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
    )
    for which, value in pairs:
        if value is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                resource.prlimit(pid, which, (value, value))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _pump_until_exit(
    proc: subprocess.Popen[bytes], pump: _Pump, deadline: float, cancel: threading.Event | None
) -> str | None:
    """Feed output until the process exits; return why it must be stopped, or None."""
    while True:
        if cancel is not None and cancel.is_set():
            return "cancelled"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timed out"
        wait = remaining
        if cancel is not None or pump.exit_fd is None:
            wait = min(wait, _POLL_SECONDS)
        if pump.read(wait) or (pump.exit_fd is None and proc.poll() is not None):
            return None


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


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
    limits: Limits | None = None,
) -> CommandResult:
    """Run ``argv`` in ``cwd`` with exactly ``env``, capturing capped stdout/stderr to files.

    The process group is stopped after ``timeout_seconds`` or once ``cancel`` is set (SIGTERM,
    then SIGKILL after ``kill_grace_seconds``); anything left in the group when the main process
    ends is killed. ``limits`` apply to the command and its children (through ``prlimit``
    where it is installed, else set on the started process at once). Raises
    :class:`CommandError` when the command cannot be started.
    """
    executable = _resolve_executable(argv, cwd, env)
    command, program = _limited(argv, executable, limits)
    for parent in {stdout_path.parent, stderr_path.parent}:
        parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as opened:
        stdout_file = opened.enter_context(stdout_path.open("wb"))
        stderr_file = opened.enter_context(stderr_path.open("wb"))
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                executable=program,
                cwd=cwd,
                env=dict(env),
                shell=False,
                stdin=_devnull(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise CommandError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        opened.pop_all()
    if limits is not None and program == executable:
        _set_limits(proc.pid, limits)  # no prlimit tool: as early as this process can
    assert proc.stdout is not None and proc.stderr is not None
    out, err = _Sink(stdout_file, output_cap_bytes), _Sink(stderr_file, output_cap_bytes)
    # The pump owns the pipe fds from here on; detach them from the Popen file objects.
    pump = _Pump({os.dup(proc.stdout.fileno()): out, os.dup(proc.stderr.fileno()): err}, proc.pid)
    proc.stdout.close()
    proc.stderr.close()

    reason: str | None = None
    try:
        reason = _pump_until_exit(proc, pump, started + timeout_seconds, cancel)
        if reason is not None:
            log.warning("pid %d %s; stopping its process group", proc.pid, reason)
            _stop(proc, kill_grace_seconds)
    finally:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        duration = time.monotonic() - started
        pump.drain(_PIPE_DRAIN_SECONDS)

    returncode = proc.returncode
    return CommandResult(
        exit_code=returncode if returncode >= 0 else None,
        signal=-returncode if returncode < 0 else None,
        timed_out=reason == "timed out",
        cancelled=reason == "cancelled",
        duration_seconds=duration,
        stdout_bytes=out.total,
        stderr_bytes=err.total,
        stdout_truncated=out.truncated,
        stderr_truncated=err.truncated,
    )
