"""Tests for workers.sandbox.run_command: exit status, env and cwd, limits, and process cleanup."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from workers import sandbox
from workers.sandbox import CommandError, CommandResult, run_command

PATH_ONLY = {"PATH": os.environ.get("PATH", os.defpath)}

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def run(
    tmp_path: Path,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 10.0,
    grace: float = 0.5,
    cap: int = 1024 * 1024,
    cancel: threading.Event | None = None,
) -> CommandResult:
    return run_command(
        argv,
        cwd=cwd or tmp_path,
        env=PATH_ONLY if env is None else env,
        timeout_seconds=timeout,
        stdout_path=tmp_path / "out" / "stdout.log",
        stderr_path=tmp_path / "out" / "stderr.log",
        output_cap_bytes=cap,
        kill_grace_seconds=grace,
        cancel=cancel,
    )


def stdout_of(tmp_path: Path) -> bytes:
    return (tmp_path / "out" / "stdout.log").read_bytes()


def stderr_of(tmp_path: Path) -> bytes:
    return (tmp_path / "out" / "stderr.log").read_bytes()


def is_gone(pid: int, within: float = 2.0) -> bool:
    """Whether the process is dead (a zombie counts: whoever inherited it has yet to reap it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.02)
    return False


def read_pid(path: Path) -> int:
    deadline = time.monotonic() + 2.0
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.01)
    return int(path.read_text())


def test_exit_code_and_both_streams_are_captured_from_an_argv(tmp_path: Path) -> None:
    result = run(tmp_path, ["sh", "-c", "echo hi; echo err >&2; exit 3"])

    assert (result.exit_code, result.signal) == (3, None)
    assert not result.ok and not result.timed_out and not result.cancelled
    assert stdout_of(tmp_path) == b"hi\n"
    assert stderr_of(tmp_path) == b"err\n"
    assert (result.stdout_bytes, result.stderr_bytes) == (3, 4)
    assert not result.stdout_truncated and not result.stderr_truncated


def test_a_successful_command_is_ok_and_creates_both_files_even_when_silent(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, ["true"])

    assert result.ok and result.exit_code == 0
    assert stdout_of(tmp_path) == b"" and stderr_of(tmp_path) == b""


def test_the_child_sees_exactly_the_env_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BCCE_TEST_LEAK", "secret")

    run(tmp_path, ["env"], env={**PATH_ONLY, "BCCE_TEST_MARK": "yes"})

    lines = set(stdout_of(tmp_path).decode().splitlines())
    assert lines == {f"PATH={PATH_ONLY['PATH']}", "BCCE_TEST_MARK=yes"}


def test_the_command_runs_in_the_given_working_directory(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()

    run(tmp_path, ["sh", "-c", "pwd"], cwd=workdir)

    assert stdout_of(tmp_path).decode().strip() == str(workdir.resolve())


def test_the_executable_is_looked_up_on_the_given_path_not_ours(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "frobnicate"
    tool.write_text("#!/bin/sh\necho frobbed\n")
    tool.chmod(0o755)

    result = run(tmp_path, ["frobnicate"], env={"PATH": str(bindir)})

    assert result.ok and stdout_of(tmp_path) == b"frobbed\n"
    with pytest.raises(CommandError, match=r"command not found: 'frobnicate' \(not on PATH\)"):
        run(tmp_path, ["frobnicate"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "empty command"),
        (["no-such-command-bcce"], "not on PATH"),
        (["./missing.sh"], "command not found"),
    ],
)
def test_a_command_that_cannot_start_raises_command_error(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        run(tmp_path, argv)


def test_a_file_without_execute_permission_raises_command_error(tmp_path: Path) -> None:
    (tmp_path / "script.sh").write_text("#!/bin/sh\necho nope\n")

    with pytest.raises(CommandError, match="not executable"):
        run(tmp_path, ["./script.sh"])


def test_a_missing_working_directory_raises_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="working directory"):
        run(tmp_path, ["true"], cwd=tmp_path / "nowhere")


def test_a_command_over_its_timeout_is_killed_with_its_whole_process_group(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    result = run(tmp_path, ["sh", "-c", "sleep 30 & echo $! > pid; wait"], timeout=0.5)

    assert result.timed_out and not result.cancelled and not result.ok
    assert (result.exit_code, result.signal) == (None, signal.SIGTERM)
    assert 0.5 <= result.duration_seconds < 2.0
    assert time.monotonic() - started < 3.0
    assert is_gone(read_pid(tmp_path / "pid"))


def test_a_command_that_ignores_sigterm_is_sigkilled_after_the_grace_period(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, ["sh", "-c", 'trap "" TERM; sleep 30'], timeout=0.3, grace=0.5)

    assert result.timed_out
    assert (result.exit_code, result.signal) == (None, signal.SIGKILL)
    assert 0.8 <= result.duration_seconds < 2.5


def test_output_over_the_cap_is_truncated_with_a_marker_while_the_child_finishes(
    tmp_path: Path,
) -> None:
    result = run(tmp_path, ["sh", "-c", "head -c 5000000 /dev/zero; echo small >&2"], cap=1000)

    assert result.ok
    assert result.stdout_bytes == 5_000_000 and result.stdout_truncated
    assert stdout_of(tmp_path) == b"\0" * 1000 + b"\n[bcce: output truncated after 1000 bytes]\n"
    assert not result.stderr_truncated and stderr_of(tmp_path) == b"small\n"


def test_a_background_child_holding_stdout_open_does_not_hang_the_run(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(tmp_path, ["sh", "-c", "sleep 30 & echo $! > pid; echo done"])

    assert result.ok and not result.timed_out
    assert time.monotonic() - started < 2.0
    assert stdout_of(tmp_path) == b"done\n"
    assert is_gone(read_pid(tmp_path / "pid"))


def test_a_grandchild_that_escaped_the_group_cannot_hang_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "_PIPE_DRAIN_SECONDS", 0.3)
    escape = "import os, time; os.setsid(); open('pid', 'w').write(str(os.getpid())); time.sleep(9)"
    script = '"$PY" -c "$ESCAPE" & while [ ! -s pid ]; do sleep 0.01; done; echo done'
    env = {**PATH_ONLY, "PY": sys.executable, "ESCAPE": escape}

    started = time.monotonic()
    result = run(tmp_path, ["sh", "-c", script], env=env)
    elapsed = time.monotonic() - started
    escaped = read_pid(tmp_path / "pid")
    try:
        assert not is_gone(escaped, within=0.1), "the grandchild should have escaped the kill"
        assert result.ok and stdout_of(tmp_path) == b"done\n"
        assert 0.3 <= elapsed < 2.0
    finally:
        os.kill(escaped, signal.SIGKILL)


def test_setting_the_cancel_event_stops_a_running_command_promptly(tmp_path: Path) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.2, cancel.set)
    timer.start()
    try:
        result = run(tmp_path, ["sleep", "30"], timeout=10.0, cancel=cancel)
    finally:
        timer.cancel()

    assert result.cancelled and not result.timed_out and not result.ok
    assert result.signal == signal.SIGTERM
    assert 0.2 <= result.duration_seconds < 1.0


def test_an_unset_cancel_event_lets_the_command_finish_normally(tmp_path: Path) -> None:
    result = run(tmp_path, ["sh", "-c", "sleep 0.2; echo fine"], cancel=threading.Event())

    assert result.ok and not result.cancelled
    assert stdout_of(tmp_path) == b"fine\n"


# Resource limits: hostile commands are stopped by the kernel, not by luck.

MB = 1024 * 1024


def limited(
    tmp_path: Path, code: str, limits: sandbox.Limits, timeout: float = 20.0
) -> CommandResult:
    return run_command(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=PATH_ONLY,
        timeout_seconds=timeout,
        stdout_path=tmp_path / "out" / "stdout.log",
        stderr_path=tmp_path / "out" / "stderr.log",
        limits=limits,
    )


@pytest.fixture(params=["prlimit", "after start"])
def how(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "prlimit" and sandbox._prlimit() is None:
        pytest.skip("util-linux prlimit is not installed")
    if request.param == "after start":
        monkeypatch.setattr(sandbox, "_prlimit", lambda: None)
    return str(request.param)


def test_a_memory_hog_fails_at_its_address_space_limit(tmp_path: Path, how: str) -> None:
    # Python needs some room to start (and to wait for the limit to be set, without prlimit).
    hog = "import time; time.sleep(0.2); b = bytearray(1024 * 1024 * 1024); print('got it')"
    result = limited(tmp_path, hog, sandbox.Limits(memory_bytes=300 * MB))
    assert result.exit_code == 1 and b"MemoryError" in stderr_of(tmp_path)
    assert b"got it" not in stdout_of(tmp_path)


def test_a_file_over_the_size_limit_is_cut_off(tmp_path: Path, how: str) -> None:
    writer = (
        "import signal, time; time.sleep(0.2); signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "open('big', 'wb').write(b'x' * 5 * 1024 * 1024)"
    )
    result = limited(tmp_path, writer, sandbox.Limits(file_size_bytes=1 * MB))
    assert not result.ok and b"File too large" in stderr_of(tmp_path)
    assert (tmp_path / "big").stat().st_size <= 1 * MB


def test_a_busy_loop_is_stopped_at_its_cpu_limit_long_before_the_timeout(
    tmp_path: Path, how: str
) -> None:
    started = time.monotonic()
    result = limited(
        tmp_path,
        "import time; time.sleep(0.2)\nwhile True: pass",
        sandbox.Limits(cpu_seconds=1),
        timeout=60,
    )
    assert result.signal in (signal.SIGXCPU, signal.SIGKILL) and not result.timed_out
    assert time.monotonic() - started < 30


def test_open_files_are_limited(tmp_path: Path, how: str) -> None:
    opener = (
        "import time; time.sleep(0.2); files = []\n"
        "try:\n    [files.append(open('/dev/null')) for _ in range(200)]\n"
        "except OSError as e:\n    print('refused after', len(files)); raise SystemExit(3)"
    )
    result = limited(tmp_path, opener, sandbox.Limits(open_files=32))
    assert result.exit_code == 3 and b"refused after" in stdout_of(tmp_path)
