"""Load test: many three-step workflows at once against two worker processes per pool.

Reports completed / lost / duplicated (must be N/0/0: each step appends one line to a file,
so a step that ran twice shows), the enqueue rate, p50/p95 queue wait (gate decision to
step start) and run latency (submit to end), and Redis memory per finished run before and
after the runs expire.

Usage: ``python scripts/load.py [--runs 1000] [--ttl 30]``. Starts its own redis-server and
workers (real ``bcce worker`` processes); a figure, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import redis
from bench import Bcce, env_with, processes, redis_server, wait_consumers

WORKFLOW = """\
version: 1
workflow: load
steps:
{steps}"""
STEP = """\
  - id: s{n}
    type: cmd
    shell: true
    command: echo "$BCCE_RUN_ID s{n}" >> "{effects}"
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--ttl", type=int, default=30, help="run TTL in Redis (s)")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    from bcce.gate import generate

    tmp = Path(tempfile.mkdtemp(prefix="bcce-load-"))
    effects = tmp / "effects"
    effects.touch()
    steps = "".join(STEP.format(n=n, effects=effects) for n in range(3))
    workflow = tmp / "load.yml"
    workflow.write_text(WORKFLOW.format(steps=steps), encoding="utf-8")
    private, public = generate(tmp / "keys")

    with redis_server() as port:
        url = f"redis://127.0.0.1:{port}/0"
        env = env_with(
            BCCE_BROKER_URL=url,
            BCCE_GATE_PRIVATE_KEY_FILE=str(private),
            BCCE_GATE_PUBLIC_KEYS=str(public),
            BCCE_RUN_TTL_SECONDS=str(args.ttl),
            BCCE_RECONCILE_SECONDS="0",
        )
        worker = [sys.executable, "-m", "bcce", "worker", "--concurrency", "2", "--pool"]
        cmds = [([*worker, pool], env) for pool in ("policy", "policy", "command", "command")]
        with processes(cmds, None):
            client = Bcce(url, tmp)
            wait_consumers(client.app, {"policy", "command"})
            memory = redis.Redis(port=port)
            before = int(memory.info("memory")["used_memory"])

            # Submitted from a thread while this one follows the runs: the first runs end,
            # and expire, long before the last is enqueued.
            started = time.monotonic()
            run_ids: list[str] = []
            enqueued: list[float] = []

            def submit_all() -> None:
                for _ in range(args.runs):
                    run_ids.append(client.submit(workflow))
                enqueued.append(time.monotonic() - started)

            submitter = threading.Thread(target=submit_all)
            submitter.start()

            # Each run is read once, as soon as it has ended (it expires --ttl seconds later).
            deadline = time.monotonic() + args.timeout
            ended: dict[str, str] = {}
            waits, latencies = [], []
            while (submitter.is_alive() or len(ended) < len(run_ids)) and (
                time.monotonic() < deadline
            ):
                open_ids = [r for r in list(run_ids) if r not in ended]
                for run_id, status in client.store.statuses(open_ids).items():
                    if status is None:
                        ended[run_id] = "vanished"
                    elif status.terminal:
                        run, records = client.store.run_with_steps(run_id)
                        ended[run_id] = status.value
                        latencies.append((run.finished_at or time.time()) - run.created_at)
                        waits += [
                            r.started_at - r.decided_at
                            for r in records
                            if r.started_at and r.decided_at
                        ]
                time.sleep(0.2)
            total_seconds = time.monotonic() - started
            submitter.join()
            enqueue_seconds = enqueued[0]
            finished = int(memory.info("memory")["used_memory"])

            time.sleep(args.ttl + 2)
            expired = int(memory.info("memory")["used_memory"])

    outcome = Counter(ended.values())
    lines = Counter(effects.read_text().splitlines())
    wanted = {f"{run_id} s{n}" for run_id in run_ids for n in range(3)}
    duplicated = sum(1 for line, count in lines.items() if count > 1)
    missing = len(wanted - set(lines))
    completed = outcome.get("succeeded", 0)
    lost = len(run_ids) - len(ended) + outcome.get("vanished", 0)
    others = {k: v for k, v in outcome.items() if k not in ("succeeded", "vanished")}
    print(f"runs: {args.runs} three-step workflows, 2 worker processes x 2 children per pool")
    print(f"  completed {completed}, lost {lost}, other outcomes {others or 'none'}")
    print(f"  steps run twice {duplicated}, steps never run {missing}")
    print(f"  enqueue: {args.runs / enqueue_seconds:.0f} runs/s ({enqueue_seconds:.2f} s)")
    print(f"  all ended after {total_seconds:.1f} s ({args.runs / total_seconds:.1f} runs/s)")
    print(
        f"  queue wait p50 {statistics.median(waits) * 1000:.0f} ms, "
        f"p95 {percentile(waits, 0.95) * 1000:.0f} ms"
    )
    print(
        f"  run latency p50 {statistics.median(latencies):.2f} s, "
        f"p95 {percentile(latencies, 0.95):.2f} s"
    )
    print(
        f"  Redis used_memory: {before / 2**20:.1f} MiB before, {finished / 2**20:.1f} MiB "
        f"with the runs finished ({(finished - before) / args.runs / 1024:.1f} KiB a run), "
        f"{expired / 2**20:.1f} MiB after they expired"
    )


if __name__ == "__main__":
    main()
