"""The chart as Helm renders it, through helm-python-sdk (Helm's own Go code, offline).

Skipped where helm-python-sdk is not installed (`pip install helm-python-sdk`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bcce.cli import flower as flower_cli
from bcce.cli import worker as worker_cli

helm = pytest.importorskip("helm_python", reason="helm-python-sdk renders the chart")

CHART = Path(__file__).resolve().parents[2] / "charts" / "bcce"
GATE_PRIVATE = "/etc/bcce/gate-private/gate.key"
EXTERNAL = {
    "redis": {
        "external": {
            "url": "rediss://master.bcce.example.cache.amazonaws.com:6380/2",
            "existingSecret": "redis-auth",
        }
    }
}


class Rendered:
    """A rendered release: its manifests by kind and name, and NOTES.txt."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.notes = ""
        self.docs: list[dict[str, Any]] = []
        for path, text in manifests.items():
            if path.endswith("NOTES.txt"):
                self.notes = text
            else:
                self.docs += [d for d in yaml.safe_load_all(text) if d]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {[d['metadata']['name'] for d in self.all(kind)]}"
        return found[0]

    def container(self, deployment: str) -> dict[str, Any]:
        spec = self.get("Deployment", deployment)["spec"]["template"]["spec"]
        return dict(spec["containers"][0])

    def worker(self, pool: str) -> dict[str, Any]:
        return self.container(f"rel-bcce-{pool}")

    def pod_specs(self) -> Iterator[dict[str, Any]]:
        for doc in self.all("Deployment") + self.all("StatefulSet"):
            yield doc["spec"]["template"]["spec"]


def render(values: dict[str, Any] | None = None) -> Rendered:
    with helm.Chart.load(str(CHART)) as chart:
        return Rendered(chart.render(values, name="rel", namespace="ns", is_install=True))


def fails(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message), helm.Chart.load(str(CHART)) as chart:
        chart.render(values, name="rel", namespace="ns", is_install=True)


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container["volumeMounts"]}


def test_lint_finds_no_errors_with_default_or_observability_values() -> None:
    extras = {"metrics": {k: {"enabled": True} for k in ("serviceMonitor", "prometheusRule")}}
    for values in (None, extras):
        assert helm.lint(str(CHART), values, strict=True)["errors"] == []


def test_default_release_has_a_deployment_and_pdb_per_pool_flower_and_bundled_redis() -> None:
    out = render()
    pools = ("policy", "command", "agent", "diff")
    names = {d["metadata"]["name"] for d in out.all("Deployment")}
    assert names == {f"rel-bcce-{p}" for p in pools} | {"rel-bcce-flower"}
    assert {d["metadata"]["name"] for d in out.all("PodDisruptionBudget")} == {
        f"rel-bcce-{p}" for p in pools
    }
    assert out.get("StatefulSet", "rel-bcce-redis")
    assert out.get("Service", "rel-bcce-redis")
    assert out.get("ServiceAccount", "rel-bcce")
    assert not out.all("ScaledObject") and not out.all("HorizontalPodAutoscaler")


def test_every_selector_picks_the_pods_or_services_it_is_for() -> None:
    out = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    workloads = {d["metadata"]["name"]: d for d in out.all("Deployment") + out.all("StatefulSet")}
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in workloads.items()}

    def picks(selector: dict[str, str]) -> set[str]:
        assert selector, "an empty selector picks everything"
        return {name for name, labels in pods.items() if selector.items() <= labels.items()}

    for name, workload in workloads.items():
        assert picks(workload["spec"]["selector"]["matchLabels"]) == {name}
    for pdb in out.all("PodDisruptionBudget"):
        assert picks(pdb["spec"]["selector"]["matchLabels"]) == {pdb["metadata"]["name"]}
    for service in out.all("Service"):
        owner = service["metadata"]["name"].removesuffix("-metrics")
        assert picks(service["spec"]["selector"]) == {owner}
    workers = {f"rel-bcce-{p}" for p in ("policy", "command", "agent", "diff")}
    policies = {d["metadata"]["name"]: d["spec"]["podSelector"] for d in out.all("NetworkPolicy")}
    assert picks(policies["rel-bcce-workers"]["matchLabels"]) == workers
    assert picks(policies["rel-bcce-flower"]["matchLabels"]) == {"rel-bcce-flower"}
    assert picks(policies["rel-bcce-redis"]["matchLabels"]) == {"rel-bcce-redis"}
    monitor = out.get("ServiceMonitor", "rel-bcce-workers")["spec"]["selector"]["matchLabels"]
    monitored = {
        s["metadata"]["name"]
        for s in out.all("Service")
        if monitor.items() <= s["metadata"]["labels"].items()
    }
    assert monitored == {f"{w}-metrics" for w in workers}


def test_each_pool_runs_bcce_worker_on_its_queues_with_flags_bcce_accepts() -> None:
    out = render({"pools": {"agent": {"queues": ["agent", "diff"]}, "diff": {"enabled": False}}})
    args = out.worker("agent")["args"]
    assert args[0] == "worker"
    parsed = worker_cli.command.make_context("worker", args[1:]).params
    assert parsed["pools"] == ("agent", "diff")
    assert parsed["concurrency"] == 2
    assert parsed["metrics_port"] == 9808
    assert parsed["impl"] == "prefork"
    assert parsed["supervise"] is False  # Kubernetes restarts the container instead
    assert out.get("Deployment", "rel-bcce-agent")["spec"]["replicas"] == 1
    assert "rel-bcce-diff" not in {d["metadata"]["name"] for d in out.all("Deployment")}
    assert "rel-bcce-diff" not in {d["metadata"]["name"] for d in out.all("PodDisruptionBudget")}


def test_only_pools_consuming_the_policy_queue_get_the_private_key() -> None:
    out = render({"gate": {"publicKeys": {"keys": ["old.pub", "new.pub"]}}})
    for pool in ("policy", "command", "agent", "diff"):
        container = out.worker(pool)
        variables = env(container)
        assert variables["BCCE_GATE_PUBLIC_KEYS"] == (
            "/etc/bcce/gate-public/old.pub,/etc/bcce/gate-public/new.pub"
        )
        holds_key = pool == "policy"
        assert (variables.get("BCCE_GATE_PRIVATE_KEY_FILE") == GATE_PRIVATE) is holds_key
        assert ("/etc/bcce/gate-private" in mounts(container)) is holds_key
    policy_volumes = out.get("Deployment", "rel-bcce-policy")["spec"]["template"]["spec"]
    private = next(v for v in policy_volumes["volumes"] if v["name"] == "gate-private")
    assert private["secret"]["secretName"] == "bcce-gate-private"


def test_every_pod_runs_non_root_read_only_without_privileges() -> None:
    out = render({"metrics": {"serviceMonitor": {"enabled": True}}})
    specs = list(out.pod_specs())
    assert len(specs) == 6  # four pools, Flower, Redis
    for spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "/tmp" in mounts(container)


def test_workers_write_only_to_tmp_home_and_the_workspace() -> None:
    out = render()
    for pool in ("policy", "command", "agent", "diff"):
        spec = out.get("Deployment", f"rel-bcce-{pool}")["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        writable = {
            path: name
            for path, name in mounts(spec["containers"][0]).items()
            if not any(
                m["mountPath"] == path and m.get("readOnly")
                for m in spec["containers"][0]["volumeMounts"]
            )
        }
        assert writable == {"/tmp": "tmp", "/home/bcce": "home", "/workspace": "workspace"}
        assert all("emptyDir" in volumes[name] for name in writable.values())


def test_bundled_redis_password_reaches_the_broker_url_through_the_environment() -> None:
    out = render()
    variables = env(out.worker("command"))
    names = [e["name"] for e in out.worker("command")["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("BCCE_BROKER_URL")  # $(VAR) order
    assert variables["REDIS_PASSWORD"]["secretKeyRef"] == {
        "name": "rel-bcce-redis",
        "key": "password",
    }
    assert variables["BCCE_BROKER_URL"] == "redis://:$(REDIS_PASSWORD)@rel-bcce-redis:6379/0"
    secret = out.get("Secret", "rel-bcce-redis")
    assert len(secret["data"]["password"]) > 20
    redis = out.get("StatefulSet", "rel-bcce-redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][:4] == [
        "--requirepass",
        "$(REDIS_PASSWORD)",
        "--maxmemory-policy",
        "noeviction",
    ]


def test_external_tls_redis_is_used_as_given_with_certificate_checks_on() -> None:
    out = render({**EXTERNAL, "redis": {**EXTERNAL["redis"], "bundled": {"enabled": True}}})
    url = env(out.worker("agent"))["BCCE_BROKER_URL"]
    assert url == (
        "rediss://:$(REDIS_PASSWORD)@master.bcce.example.cache.amazonaws.com:6380/2"
        "?ssl_cert_reqs=required"
    )
    assert env(out.container("rel-bcce-flower"))["BCCE_BROKER_URL"] == url
    assert not out.all("StatefulSet")
    assert "rel-bcce-redis" not in {d["metadata"]["name"] for d in out.all("Secret")}


def test_an_external_url_keeps_its_own_tls_options_and_may_have_no_password() -> None:
    given = "rediss://cache.internal:6379/0?ssl_cert_reqs=none"
    out = render({"redis": {"external": {"url": given}}})
    variables = env(out.worker("command"))
    assert variables["BCCE_BROKER_URL"] == given
    assert "REDIS_PASSWORD" not in variables


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis": {"external": {"url": "redis://u:p@h:6379/0"}}}, "no credentials in the URL"),
        ({"redis": {"external": {"url": "http://h:6379/0"}}}, "expected redis://"),
        ({"redis": {"bundled": {"enabled": False}}}, "bcce needs Redis"),
        ({"pools": {"agent": {"autoscaling": {"enabled": True}}}}, "needs autoscaling.keda"),
        ({"flower": {"auth": {"basicAuth": "no-colon"}}}, "expected USER:PASSWORD"),
    ],
)
def test_impossible_values_fail_with_a_message_naming_the_setting(
    values: dict[str, Any], message: str
) -> None:
    fails(values, message)


def test_keda_scales_each_autoscaled_pool_on_its_redis_lists() -> None:
    out = render(
        {
            **EXTERNAL,
            "autoscaling": {"keda": {"enabled": True}},
            "pools": {"agent": {"queues": ["agent", "diff"], "autoscaling": {"enabled": True}}},
        }
    )
    scaled = out.get("ScaledObject", "rel-bcce-agent")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "rel-bcce-agent"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 10)
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["listName"] for t in triggers] == ["agent", "diff"]
    for trigger in triggers:
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["address"] == "master.bcce.example.cache.amazonaws.com:6380"
        assert trigger["metadata"]["databaseIndex"] == "2"
        assert trigger["metadata"]["enableTLS"] == "true"
        assert trigger["metadata"]["listLength"] == "2"
        assert trigger["authenticationRef"]["name"] == "rel-bcce-redis-keda"
    auth = out.get("TriggerAuthentication", "rel-bcce-redis-keda")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "redis-auth", "key": "password"}
    ]
    assert "replicas" not in out.get("Deployment", "rel-bcce-agent")["spec"]
    assert [d["metadata"]["name"] for d in out.all("ScaledObject")] == ["rel-bcce-agent"]
    assert not out.all("HorizontalPodAutoscaler")


def test_hpa_scales_on_the_external_queue_depth_metric_of_the_pools_queues() -> None:
    out = render(
        {
            "autoscaling": {"hpa": {"enabled": True}},
            "pools": {"command": {"autoscaling": {"enabled": True}}},
        }
    )
    hpa = out.get("HorizontalPodAutoscaler", "rel-bcce-command")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "rel-bcce-command",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "bcce_queue_depth"
    assert metric["external"]["metric"]["selector"]["matchExpressions"] == [
        {"key": "pool", "operator": "In", "values": ["command"]}
    ]
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "4"}
    assert not out.all("ScaledObject")


def test_policy_file_is_mounted_and_named_only_when_it_has_content() -> None:
    assert "BCCE_POLICY_FILE" not in env(render().worker("policy"))
    out = render({"policy": {"content": "cmd_allowlist: [git]\n"}})
    for pool in ("policy", "command"):
        assert env(out.worker(pool))["BCCE_POLICY_FILE"] == "/etc/bcce/policy/policy.yaml"
        assert mounts(out.worker(pool))["/etc/bcce/policy"] == "policy"
    assert out.get("ConfigMap", "rel-bcce-policy")["data"] == {
        "policy.yaml": "cmd_allowlist: [git]\n"
    }


def test_every_pool_signs_audit_records_with_the_key_given() -> None:
    assert "BCCE_AUDIT_KEY_FILE" not in env(render().worker("command"))
    out = render({"audit": {"secretName": "bcce-audit", "key": "audit.key"}})
    for pool in ("policy", "command", "agent", "diff"):
        container = out.worker(pool)
        assert env(container)["BCCE_AUDIT_KEY_FILE"] == "/etc/bcce/audit/audit.key"
        assert mounts(container)["/etc/bcce/audit"] == "audit-key"
    spec = out.get("Deployment", "rel-bcce-diff")["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "audit-key")
    assert volume["secret"]["secretName"] == "bcce-audit"


def test_config_reaches_every_bcce_pod_and_a_change_rolls_them() -> None:
    before = render()
    after = render({"config": {"BCCE_MAX_STEP_TIMEOUT_SECONDS": "7200"}})
    config = after.get("ConfigMap", "rel-bcce-config")["data"]
    assert config["BCCE_MAX_STEP_TIMEOUT_SECONDS"] == "7200"
    for name in ("rel-bcce-policy", "rel-bcce-agent", "rel-bcce-flower"):
        spec = after.get("Deployment", name)["spec"]["template"]
        assert spec["spec"]["containers"][0]["envFrom"] == [
            {"configMapRef": {"name": "rel-bcce-config"}}
        ]
        old = before.get("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        assert spec["metadata"]["annotations"]["checksum/config"] != old["checksum/config"]


def test_flower_runs_bcce_flower_on_all_interfaces_behind_basic_auth() -> None:
    out = render({"flower": {"auth": {"basicAuth": "ops:s3cret"}}})
    container = out.container("rel-bcce-flower")
    assert container["args"][0] == "flower"
    parsed = flower_cli.command.make_context("flower", container["args"][1:]).params
    assert (parsed["address"], parsed["port"], parsed["flower_args"]) == ("0.0.0.0", 5555, ())
    assert env(container)["FLOWER_BASIC_AUTH"]["secretKeyRef"] == {
        "name": "rel-bcce-flower",
        "key": "basic-auth",
    }
    secret = out.get("Secret", "rel-bcce-flower")
    assert secret["data"]["basic-auth"] == "b3BzOnMzY3JldA=="  # ops:s3cret
    assert out.get("Service", "rel-bcce-flower")["spec"]["ports"][0]["port"] == 5555
    existing = render({"flower": {"auth": {"existingSecret": "mine"}}})
    assert "rel-bcce-flower" not in {d["metadata"]["name"] for d in existing.all("Secret")}


def test_service_account_carries_the_irsa_role() -> None:
    role = "arn:aws:iam::123456789012:role/bcce"
    sa = render({"serviceAccount": {"roleArn": role}}).get("ServiceAccount", "rel-bcce")
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": role}
    assert "annotations" not in render().get("ServiceAccount", "rel-bcce")["metadata"]


def _ports(rules: list[dict[str, Any]]) -> set[int]:
    return {p["port"] for rule in rules for p in rule.get("ports", [])}


def test_network_policies_let_workers_reach_dns_redis_and_https_only() -> None:
    out = render()
    workers = out.get("NetworkPolicy", "rel-bcce-workers")["spec"]
    assert workers["policyTypes"] == ["Ingress", "Egress"]
    assert _ports(workers["egress"]) == {53, 6379, 443}
    assert _ports(workers["ingress"]) == {9808}
    flower = out.get("NetworkPolicy", "rel-bcce-flower")["spec"]
    assert _ports(flower["ingress"]) == {5555}
    redis = out.get("NetworkPolicy", "rel-bcce-redis")["spec"]
    assert _ports(redis["ingress"]) == {6379}
    external = render(EXTERNAL)
    assert _ports(external.get("NetworkPolicy", "rel-bcce-workers")["spec"]["egress"]) == {
        53,
        6380,
        443,
    }
    assert [d["metadata"]["name"] for d in external.all("NetworkPolicy")] == [
        "rel-bcce-workers",
        "rel-bcce-flower",
    ]


def test_grace_periods_are_per_pool_and_pre_stop_sends_no_signal() -> None:
    out = render()
    grace = {
        pool: out.get("Deployment", f"rel-bcce-{pool}")["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
        for pool in ("policy", "command", "agent", "diff")
    }
    assert grace["agent"] == 3600
    assert grace["policy"] < grace["command"]
    for pool in grace:
        hook = " ".join(out.worker(pool)["lifecycle"]["preStop"]["exec"]["command"])
        assert not any(word in hook for word in ("kill", "celery", "control", "shutdown"))


def test_notes_warn_when_a_step_pool_would_stop_before_a_default_step_ends() -> None:
    assert "WARNING" not in render().notes
    notes = render({"pools": {"diff": {"terminationGracePeriodSeconds": 30}}}).notes
    assert "pools.diff.terminationGracePeriodSeconds (30)" in notes


def test_prometheus_scraping_by_annotations_or_service_monitor() -> None:
    annotations = render().get("Deployment", "rel-bcce-command")["spec"]["template"]["metadata"]
    assert annotations["annotations"]["prometheus.io/port"] == "9808"
    out = render({"metrics": {"podAnnotations": False, "serviceMonitor": {"enabled": True}}})
    template = out.get("Deployment", "rel-bcce-command")["spec"]["template"]["metadata"]
    assert "prometheus.io/scrape" not in template["annotations"]
    monitor = out.get("ServiceMonitor", "rel-bcce-workers")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    service = out.get("Service", "rel-bcce-command-metrics")
    assert service["spec"]["ports"][0]["port"] == 9808
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()


def test_alert_rules_and_dashboard_ship_as_they_are_in_dashboards() -> None:
    out = render(
        {"metrics": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}}
    )
    rules = yaml.safe_load((CHART / "dashboards" / "alerts.yaml").read_text())
    assert out.get("PrometheusRule", "rel-bcce")["spec"] == rules
    dashboard = out.get("ConfigMap", "rel-bcce-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "bcce.json").read_text())
    assert json.loads(dashboard["data"]["bcce.json"]) == shipped
