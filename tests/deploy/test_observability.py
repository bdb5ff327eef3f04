"""The Grafana dashboard and the alert rules query only metrics and labels bcce exports."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "charts" / "bcce" / "dashboards"
METRIC = re.compile(r"\bbcce_[a-z_]+\b")
SELECTOR = re.compile(r"\b(bcce_[a-z_]+)\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
SUFFIXES = {
    "Counter": ("_total",),
    "Histogram": ("_bucket", "_sum", "_count"),
    "Summary": ("_sum", "_count"),
    "Gauge": ("",),
    "GaugeMetricFamily": ("",),
    "CounterMetricFamily": ("_total",),
}


def exported() -> dict[str, set[str]]:
    """Series names workers/metrics.py exports, with their labels (``le`` on buckets)."""
    tree = ast.parse((ROOT / "workers" / "metrics.py").read_text())
    series: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        kind = node.func.id
        if kind not in SUFFIXES or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        base = str(node.args[0].value).removesuffix("_total")
        labels_node = next(
            (k.value for k in node.keywords if k.arg in ("labels", "labelnames")), None
        )
        if labels_node is None and len(node.args) > 2:
            labels_node = node.args[2]
        labels = set(ast.literal_eval(labels_node)) if labels_node is not None else set()
        for suffix in SUFFIXES[kind]:
            series[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def readme_depth_formula() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"`(max by \(pool\) \(bcce_queue_messages\)[^`]*)`", readme)
    assert match, "README.md no longer states the queue-depth formula"
    return match.group(1)


def bare(expr: str) -> str:
    """expr without label matchers or whitespace, to compare query shapes."""
    return re.sub(r"\s+", "", SELECTOR.sub(r"\1", expr))


def dashboard() -> dict[str, Any]:
    loaded = json.loads((DASHBOARDS / "bcce.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def dashboard_queries() -> list[str]:
    queries = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    queries += [
        v["definition"] for v in dashboard()["templating"]["list"] if v.get("type") == "query"
    ]
    return queries


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((DASHBOARDS / "alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def unknown_metrics_and_labels(expr: str, series: dict[str, set[str]]) -> list[str]:
    problems = [f"metric {name}" for name in METRIC.findall(expr) if name not in series]
    all_labels = set().union(*series.values())
    for name, matchers in SELECTOR.findall(expr):
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers):
            if label not in series.get(name, set()):
                problems.append(f"label {label} on {name}")
    for grouping in GROUPING.findall(expr):
        problems += [
            f"grouping label {g}" for g in re.findall(r"\w+", grouping) if g not in all_labels
        ]
    return problems


def test_metric_parsing_sees_the_series_bcce_serves() -> None:
    series = exported()
    assert series["bcce_runs_total"] == {"outcome"}
    assert series["bcce_step_duration_seconds_bucket"] == {"type", "pool", "le"}
    assert series["bcce_worker_tasks"] == {"pool", "state"}
    assert "bcce_queue_messages" in series


@pytest.mark.parametrize("expr", dashboard_queries())
def test_dashboard_queries_use_only_exported_metrics_and_labels(expr: str) -> None:
    assert METRIC.search(expr), expr
    assert unknown_metrics_and_labels(expr, exported()) == []


def test_the_metric_check_rejects_a_misspelt_metric_or_label() -> None:
    series = exported()
    assert unknown_metrics_and_labels("rate(bcce_run_total[5m])", series) == [
        "metric bcce_run_total"
    ]
    assert unknown_metrics_and_labels('bcce_runs_total{pool="x"}', series) == [
        "label pool on bcce_runs_total"
    ]


def test_dashboard_shows_runs_steps_latency_denials_and_queue_depth() -> None:
    queries = dashboard_queries()
    joined = "\n".join(queries)
    assert "sum by (outcome) (rate(bcce_runs_total" in joined
    assert "sum by (pool, outcome) (rate(bcce_steps_total" in joined
    for quantile, metric in (
        ("0.5", "bcce_step_duration_seconds"),
        ("0.95", "bcce_step_duration_seconds"),
        ("0.95", "bcce_queue_wait_seconds"),
    ):
        assert f"histogram_quantile({quantile}, sum by (le, pool) (rate({metric}_bucket" in joined
    assert 'sum by (rule) (rate(bcce_policy_decisions_total{outcome="deny"}' in joined
    assert bare(readme_depth_formula()) in {bare(q) for q in queries}


def test_dashboard_is_importable_grafana_json() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "pool"} <= variables
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_every_alert_rule_is_complete_and_queries_exported_metrics() -> None:
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) == len(rules)
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= rule.keys(), rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert unknown_metrics_and_labels(rule["expr"], exported()) == [], rule["alert"]


def test_alerts_cover_failures_denials_queue_depth_and_missing_workers() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    assert 'bcce_runs_total{outcome=~"failed' in rules["BcceRunFailureRatioHigh"]["expr"]
    assert 'bcce_policy_decisions_total{outcome="deny"}' in rules["BccePolicyDenialsSpike"]["expr"]
    depth = rules["BcceQueueDepthHigh"]
    assert bare(readme_depth_formula()) in bare(depth["expr"])
    assert depth["for"] == "10m"
    assert "bcce_worker_tasks" in rules["BccePoolNotScraped"]["expr"]


def test_chart_readme_gives_the_adapter_the_readme_queue_depth_formula() -> None:
    chart_readme = (ROOT / "charts" / "bcce" / "README.md").read_text()
    assert bare(readme_depth_formula()) in bare(chart_readme)
