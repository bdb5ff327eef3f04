"""The Helm chart holds together without Helm: templates, values, helpers and bcce's own CLI.

test_chart_render.py renders the chart with Helm's Go code when helm-python-sdk is installed;
these checks run everywhere, in well under a second.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bcce.cli import flower as flower_cli
from bcce.cli import worker as worker_cli
from bcce.settings import Settings
from bcce.steptypes import BUILTIN_QUEUES
from tests.deploy import gotemplate

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bcce"
TEMPLATES = CHART / "templates"
HELPERS = TEMPLATES / "_helpers.tpl"
POOL_KEYS = {
    "enabled",
    "replicas",
    "concurrency",
    "queues",
    "impl",
    "resources",
    "nodeSelector",
    "tolerations",
    "affinity",
    "extraEnv",
    "terminationGracePeriodSeconds",
    "metrics",
    "pdb",
    "autoscaling",
}


def values() -> dict[str, Any]:
    loaded = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def template_files() -> list[Path]:
    return sorted(p for p in TEMPLATES.iterdir() if p.suffix in (".yaml", ".tpl", ".txt"))


def manifest_templates() -> list[Path]:
    return sorted(TEMPLATES.glob("*.yaml"))


def test_chart_yaml_is_a_helm_v2_application_chart() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "bcce"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["appVersion"]


@pytest.mark.parametrize("path", template_files(), ids=lambda p: p.name)
def test_every_template_has_balanced_delimiters_and_closed_blocks(path: Path) -> None:
    assert gotemplate.structure_errors(path.read_text()) == []


def test_the_structure_check_catches_an_unclosed_block() -> None:
    broken = "{{- if .Values.a }}\nkind: X\n{{- range .Values.b }}\n{{- end }}\n"
    assert gotemplate.structure_errors(broken) == ["if never closed with end"]
    assert gotemplate.structure_errors("a: {{ .Values.a }\n") == ["unbalanced '{{'"]


def test_every_values_path_a_template_reads_exists_in_values_yaml() -> None:
    defaults = values()
    missing = {
        f"{path.name}: .Values.{'.'.join(ref)}"
        for path in template_files()
        for ref in gotemplate.values_references(path.read_text())
        if not gotemplate.lookup(defaults, ref)
    }
    assert not missing, "templates read values that values.yaml does not define"


def test_every_value_in_values_yaml_is_read_by_some_template() -> None:
    refs = set().union(*(gotemplate.values_references(p.read_text()) for p in template_files()))
    unused = [
        ".".join(leaf)
        for leaf in gotemplate.leaf_paths(values())
        if not any(leaf[:n] in refs for n in range(1, len(leaf) + 1))
    ]
    assert unused == [], "values.yaml documents keys no template reads"


def test_every_include_names_a_template_defined_in_helpers() -> None:
    defined = gotemplate.defined_names(HELPERS.read_text())
    for path in template_files():
        assert gotemplate.included_names(path.read_text()) <= defined, path.name
        if path != HELPERS:
            assert gotemplate.defined_names(path.read_text()) == set(), path.name


@pytest.mark.parametrize("path", manifest_templates(), ids=lambda p: p.name)
def test_every_manifest_template_is_yaml_with_kind_and_name_once_actions_are_stripped(
    path: Path,
) -> None:
    documents = [d for d in yaml.safe_load_all(gotemplate.strip_actions(path.read_text())) if d]
    assert documents
    for doc in documents:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        assert "name" in doc["metadata"]


def test_stripping_keeps_an_indentation_mistake_visible() -> None:
    good = "spec:\n  env:\n    {{- toYaml .Values.a | nindent 4 }}\n    - name: B\n"
    bad = "spec:\n  env:\n    {{- toYaml .Values.a | nindent 4 }}\n   - name: B\n"
    assert yaml.safe_load(gotemplate.strip_actions(good)) == {"spec": {"env": ["x", {"name": "B"}]}}
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(gotemplate.strip_actions(bad))


def test_there_is_one_pool_per_builtin_queue_consuming_its_own_queue() -> None:
    pools = values()["pools"]
    assert set(pools) == set(BUILTIN_QUEUES)
    for name, pool in pools.items():
        assert pool.keys() >= POOL_KEYS, name
        assert pool["queues"] == [name]
        assert {"enabled", "min", "max", "targetQueueDepth"} <= pool["autoscaling"].keys()
        assert isinstance(pool["metrics"]["port"], int)


def test_step_pools_outlast_a_default_step_and_the_agent_pool_an_hour() -> None:
    defaults = values()
    default_step = int(defaults["config"]["BCCE_DEFAULT_STEP_TIMEOUT_SECONDS"])
    for name, pool in defaults["pools"].items():
        if name != "policy":
            assert pool["terminationGracePeriodSeconds"] > default_step, name
    assert defaults["pools"]["agent"]["terminationGracePeriodSeconds"] >= 3600


def test_default_security_contexts_are_non_root_read_only_and_unprivileged() -> None:
    defaults = values()
    pod, container = defaults["podSecurityContext"], defaults["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"] == container["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    for template in ("workers.yaml", "flower.yaml", "redis.yaml"):
        assert 'include "bcce.securityContext"' in (TEMPLATES / template).read_text(), template


def test_config_holds_only_settings_bcce_reads() -> None:
    known = {f"BCCE_{name.upper()}" for name in Settings.model_fields}
    assert set(values()["config"]) <= known
    for key in ("BCCE_BROKER_URL", "BCCE_GATE_PRIVATE_KEY_FILE", "BCCE_GATE_PUBLIC_KEYS"):
        assert key in known  # the chart sets these itself
        assert key not in values()["config"]


def _literal_flags(template: str) -> list[str]:
    """The `- --flag` lines of a container's args in a template."""
    return re.findall(r"^\s*- (--[a-z][a-z-]*)\s*$", (TEMPLATES / template).read_text(), re.M)


def test_worker_flags_in_the_chart_are_flags_bcce_worker_accepts() -> None:
    accepted = {opt for p in worker_cli.command.params for opt in (*p.opts, *p.secondary_opts)}
    flags = set(_literal_flags("workers.yaml"))
    assert {"--pool", "--concurrency", "--metrics-port", "--impl"} <= flags
    assert flags <= accepted


def test_flower_flags_in_the_chart_are_flags_bcce_flower_accepts() -> None:
    accepted = {opt for p in flower_cli.command.params for opt in p.opts}
    flags = set(_literal_flags("flower.yaml"))
    assert flags == {"--address", "--port"}
    assert flags <= accepted
