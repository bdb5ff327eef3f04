"""Pools on different hosts share only Redis and the artifact store (S3, here moto's server).

Each pool's worker has its own workspace cache and artifact cache, as separate machines
would: host A runs the command pool, host B the agent and diff pools. Every step rebuilds
the run's workspace from what the steps before it recorded in S3, and the final diff holds
the changes made on both hosts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis

from tests.conftest import RedisServer, Workers, base_env, bcce
from tests.gitrepo import git

pytestmark = pytest.mark.integration
pytest.importorskip("claude_agent_sdk")
moto_server = pytest.importorskip("moto.server")

DB = 15
BUCKET = "bcce-shared"
FAKE = Path(__file__).resolve().parent.parent / "fakes" / "claude"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url, **_creds())
    client.create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }


def host_env(broker: str, s3_url: str, home: Path) -> dict[str, str]:
    env = base_env(
        BCCE_BROKER_URL=broker,
        BCCE_ARTIFACTS_URL=f"s3://{BUCKET}/runs",
        BCCE_WORKSPACES_DIR=str(home / "workspaces"),
        BCCE_CLAUDE_BIN=str(FAKE),
        AWS_ENDPOINT_URL_S3=s3_url,
        **AWS,
    )
    env.pop("AWS_PROFILE", None)
    return env


@pytest.fixture(scope="module")
def hosts(
    redis_server: RedisServer, s3: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    homes = {name: tmp_path_factory.mktemp(f"host-{name}") for name in ("a", "b")}
    group = Workers(url, tmp_path_factory.mktemp("multihost-logs"))
    group.start(["policy", "command"], concurrency=1, env=host_env(url, s3, homes["a"]))
    group.start(["agent", "diff"], concurrency=1, env=host_env(url, s3, homes["b"]))
    yield homes
    group.stop()


def test_steps_on_two_hosts_build_one_diff_through_the_shared_store(
    hosts: dict[str, Path], redis_server: RedisServer, s3: str, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / ".gitignore").write_text("/.bcce_runs/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    scenario = tmp_path / "scenario.json"
    scenario.write_text(
        json.dumps(
            {
                "actions": [
                    {"tool": "Read", "input": {"file_path": "src/calc.py"}},
                    {"tool": "Write", "input": {"file_path": "docs/fix.md", "content": "why\n"}},
                ],
                "result": "documented",
            }
        )
    )
    workflow = tmp_path / "wf.yml"
    workflow.write_text(
        f"""\
version: 1
workflow: two hosts
env:
  FAKE_CLAUDE_SCENARIO: {scenario}
steps:
  - id: fix
    type: cmd
    command: python3 -c "import pathlib; p = pathlib.Path('src/calc.py');
      p.write_text(p.read_text().replace('a - b', 'a + b'))"
  - id: explain
    type: agent
    prompt: "Read src/calc.py and explain the fix in docs/fix.md. {{{{ steps.fix.output }}}}"
    available_tools: [ReadFile, Diff]
    policy:
      allowed_paths: ["docs/**"]
  - id: check
    type: cmd
    command: grep -q "a + b" src/calc.py docs/fix.md
  - id: ship
    type: apply_diff
    approve: true
    policy:
      allowed_paths: ["src/**", "docs/**"]
"""
    )
    env = host_env(redis_server.url(DB), s3, tmp_path / "cli")
    result = bcce(
        "workflow", "run", str(workflow), "--workspace", str(repo), "--json", env=env, cwd=repo
    )
    lines = [json.loads(x) for x in result.out.splitlines() if x.startswith("{")]
    summary: dict[str, Any] = next(x for x in lines if x.get("type") == "run.summary")
    assert result.code == 0, result.out + result.err
    steps = {s["id"]: s for s in summary["steps"]}
    assert [s["worker"].split("@")[0] for s in summary["steps"]] == [
        "policy+command-0",
        "agent+diff-1",
        "policy+command-0",
        "agent+diff-1",
    ]
    # The final diff holds both hosts' changes, and landed in the repository.
    assert "return a + b" in (repo / "src" / "calc.py").read_text()
    assert (repo / "docs" / "fix.md").read_text() == "why\n"
    assert steps["ship"]["artifacts"]["proposed.diff"].startswith(f"s3://{BUCKET}/runs/")

    # Each host rebuilt what the other did from the store, never from the other's disk.
    run_id = summary["run_id"]
    client = boto3.client("s3", endpoint_url=s3, **_creds())
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    for step in ("fix", "explain", "check", "ship"):
        assert f"runs/{run_id}/{step}/changes.diff" in keys
    assert f"runs/{run_id}/workspace.patch" in keys
    a_cache = hosts["a"] / "artifacts" / run_id
    b_cache = hosts["b"] / "artifacts" / run_id
    assert (a_cache / "explain" / "changes.diff").read_text().count("docs/fix.md") >= 1
    assert (b_cache / "fix" / "changes.diff").is_file()
    a_clone = hosts["a"] / "workspaces" / run_id
    b_clone = hosts["b"] / "workspaces" / run_id
    assert (a_clone / "docs" / "fix.md").is_file() and (b_clone / "src" / "calc.py").is_file()

    # Any machine with the store can read the run's artifacts back.
    elsewhere = host_env(redis_server.url(DB), s3, tmp_path / "laptop")
    got = bcce("workflow", "artifacts", run_id, "explain", "--get", "output.txt", env=elsewhere)
    assert got.code == 0 and got.out == "documented\n"
