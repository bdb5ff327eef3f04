"""docker/compose.yaml is a valid Compose file for a local stack that keeps bcce's rules.

Validated offline against the Compose specification's JSON schema, as check-jsonschema
vendors it (Apache-2.0, a dev dependency); no Docker engine needed.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

from bcce.cli import flower, worker
from bcce.steptypes import AGENT, APPLY_DIFF, CMD, POLICY_QUEUE, PROMPT

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
POOLS = {POLICY_QUEUE} | {t.queue for t in (CMD, PROMPT, AGENT, APPLY_DIFF)}
PRIVATE = "gate_private"


@cache
def schema() -> dict[str, Any]:
    text = (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def compose() -> dict[str, Any]:
    """The file as Compose reads it (YAML merge keys resolved), before interpolation."""
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.validators.validator_for(schema())(schema())
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '<top>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def parsed(command: click.Command, argv: list[str]) -> dict[str, Any]:
    """The options the bcce command would run with (parsed by its own click command)."""
    with command.make_context(command.name or "bcce", list(argv)) as ctx:
        return dict(ctx.params)


def workers() -> dict[str, dict[str, Any]]:
    """Service name -> parsed `bcce worker` options, for every worker service."""
    found = {}
    for name, service in compose()["services"].items():
        argv = [str(a) for a in service.get("command", [])]
        if argv[:1] == ["worker"]:
            found[name] = parsed(worker.command, argv[1:])
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def secrets(service: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    jsonschema.validators.validator_for(schema()).check_schema(schema())
    assert schema_errors(compose()) == []


def test_the_schema_check_rejects_what_compose_would() -> None:
    broken = compose()
    broken["services"]["redis"]["comand"] = ["redis-server"]
    broken["services"]["policy"]["healthcheck"]["interval"] = 30
    errors = schema_errors(broken)
    assert any("comand" in e for e in errors), errors
    assert any(e.startswith("services.policy.healthcheck.interval") for e in errors), errors


def test_every_pool_has_a_worker_with_metrics_and_one_process_the_engine_restarts() -> None:
    pools = [pool for options in workers().values() for pool in options["pools"]]
    assert sorted(pools) == sorted(POOLS)  # each pool once
    for name, options in workers().items():
        assert options["metrics_port"], name
        assert options["supervise"] is False, name  # restart: the engine does it, visibly
        assert compose()["services"][name]["restart"] == "unless-stopped"


def test_bcce_services_use_the_image_the_dockerfile_builds_and_a_healthy_redis() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if name in ("redis", "prometheus"):
            continue
        build = service["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (
            DOCKER / "Dockerfile"
        ), name
        assert environment(service)["BCCE_BROKER_URL"].startswith("redis://redis:6379/"), name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert str(service["user"]).split(":")[0] != "0", name


def test_only_the_policy_pool_gets_the_gate_private_key() -> None:
    doc = compose()
    for name, options in workers().items():
        service = doc["services"][name]
        env = environment(service)
        assert "gate_public" in secrets(service), name
        assert env["BCCE_GATE_PUBLIC_KEYS"] == "/run/secrets/gate_public", name
        if POLICY_QUEUE in options["pools"]:
            assert options["pools"] == (POLICY_QUEUE,), "the gate shares no process with steps"
            assert PRIVATE in secrets(service)
            assert env["BCCE_GATE_PRIVATE_KEY_FILE"] == f"/run/secrets/{PRIVATE}"
        else:
            assert PRIVATE not in secrets(service), name
            assert "BCCE_GATE_PRIVATE_KEY_FILE" not in env, name
    holders = [n for n, s in doc["services"].items() if PRIVATE in secrets(s)]
    assert holders == [n for n, o in workers().items() if POLICY_QUEUE in o["pools"]]
    assert doc["secrets"][PRIVATE]["file"].endswith("/gate.key")
    assert doc["secrets"]["gate_public"]["file"].endswith("/gate.pub")
    # The keys' folder itself is mounted nowhere: that would hand every pool gate.key.
    key_dir = doc["secrets"][PRIVATE]["file"].rsplit("/", 1)[0]
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = volume if isinstance(volume, str) else volume.get("source", "")
            assert not str(source).startswith(key_dir), (name, volume)


def test_redis_keeps_an_append_only_file_on_a_volume_and_never_evicts() -> None:
    doc = compose()
    redis = doc["services"]["redis"]
    args = [str(a) for a in redis["command"]]
    assert args[0] == "redis-server"
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in doc["volumes"]


def test_every_service_has_a_healthcheck_on_its_own_port() -> None:
    doc = compose()
    ports = {name: options["metrics_port"] for name, options in workers().items()}
    ports["flower"] = parsed(flower.command, doc["services"]["flower"]["command"][1:])["port"]
    ports["prometheus"] = 9090
    for name, service in doc["services"].items():
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
        command = " ".join(str(t) for t in test[1:])
        if name == "redis":
            assert "redis-cli ping" in command
        else:
            assert f"127.0.0.1:{ports[name]}/" in command, (name, command)


def test_flower_takes_its_basic_auth_from_the_environment() -> None:
    service = compose()["services"]["flower"]
    options = parsed(flower.command, service["command"][1:])
    assert options["address"] == "0.0.0.0" and not options["no_auth"]
    assert options["basic_auth"] == ()  # never on the command line, where ps shows it
    auth = environment(service)["FLOWER_BASIC_AUTH"]
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", auth), auth  # required, not a default
    assert "5555" in service["ports"][0] and service["ports"][0].startswith("127.0.0.1:")


def test_prometheus_scrapes_each_pool_on_its_metrics_port() -> None:
    doc = compose()
    service = doc["services"]["prometheus"]
    mounts = dict(v.split(":")[:2] for v in service["volumes"])
    assert mounts["./prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in service["command"]
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"{name}:{options['metrics_port']}" for name, options in workers().items()}


@pytest.mark.parametrize("name", ["redis", "flower", "prometheus"])
def test_published_ports_are_on_loopback_only(name: str) -> None:
    for port in compose()["services"][name].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), (name, port)
