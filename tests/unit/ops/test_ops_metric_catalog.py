"""The dashboard and alert rules read only metrics the worker or Triton really export."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from ops.metric_catalog import (
    DASHBOARD_MUST_SHOW,
    TRITON_GPU_METRICS,
    TRITON_METRICS,
    dashboard_problems,
    dashboard_queries,
    exposition_metric_names,
    known_metric_names,
    rules_problems,
    worker_metric_names,
)
from streaming.metrics import Metrics

CHART = Path(__file__).resolve().parents[3] / "helm" / "vcfscreen"
DASHBOARD = CHART / "dashboards" / "vcfscreen.json"
RULES_TEMPLATE = CHART / "rules" / "vcfscreen-alerts.yaml"
RULES_TESTS = Path(__file__).resolve().parents[3] / "ops" / "rules-tests.yaml"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_worker_names_come_from_its_exposition_including_unlabelled_families():
    names = worker_metric_names()
    # Families with labels but no sample yet still count: consumer lag and dead letters appear
    # only once a partition is assigned or a record dead-lettered.
    assert "vcfscreen_consumer_lag_messages" in names
    assert "vcfscreen_dead_letters_total" in names
    assert {"vcfscreen_stage_duration_seconds_bucket", "vcfscreen_studies_total", "vcfscreen_build_info"} <= names
    assert "vcfscreen_studies" not in names  # a counter's samples carry _total


def test_exposition_names_follow_sample_suffixes():
    text = (
        "# TYPE a counter\na_total 1\n"
        "# TYPE b histogram\nb_bucket{le=\"+Inf\"} 1\nb_sum 1\nb_count 1\n"
        "# TYPE c gauge\n"
    )
    assert {"a_total", "b_bucket", "b_sum", "b_count", "c"} <= exposition_metric_names(text)


def test_the_chart_dashboard_reads_only_exported_metrics(dashboard):
    assert dashboard_problems(dashboard, known_metric_names()) == []
    # And it reads every one of the worker's metric families and Triton's documented ones.
    used = set().union(*(names for _, _, names in dashboard_queries(dashboard)))
    worker_families = {
        "vcfscreen_studies_total", "vcfscreen_stage_duration_seconds_bucket", "vcfscreen_study_duration_seconds_bucket",
        "vcfscreen_studies_in_flight", "vcfscreen_queue_depth", "vcfscreen_findings_total",
        "vcfscreen_consumer_lag_messages", "vcfscreen_retries_total", "vcfscreen_dead_letters_total", "vcfscreen_build_info",
    }
    assert worker_families <= used
    assert set(TRITON_METRICS) | set(TRITON_GPU_METRICS) <= used


def test_a_misspelt_metric_and_a_broken_panel_are_reported(dashboard):
    broken = copy.deepcopy(dashboard)
    target = broken["panels"][1]["targets"][0]
    target["expr"] = target["expr"].replace("vcfscreen_studies_total", "vcfscreen_study_total")
    broken["panels"][2]["targets"] = []
    broken["panels"][3]["datasource"] = {"type": "prometheus", "uid": "prom-prod"}
    broken["panels"][4]["id"] = broken["panels"][5]["id"]
    problems = "\n".join(dashboard_problems(broken, known_metric_names()))
    assert "metric vcfscreen_study_total is exported by neither the worker nor Triton" in problems
    assert f"panel {broken['panels'][2]['title']!r} has no query" in problems
    assert "does not use the $datasource variable" in problems
    assert "panel ids used twice" in problems


def test_a_dashboard_missing_a_required_view_is_reported(dashboard):
    trimmed = copy.deepcopy(dashboard)
    trimmed["panels"] = [p for p in trimmed["panels"] if "nv_gpu" not in json.dumps(p)]
    problems = dashboard_problems(trimmed, known_metric_names())
    assert problems == [f"the dashboard shows no GPU use (none of {', '.join(DASHBOARD_MUST_SHOW['GPU use'])})"]


def test_metrics_added_to_the_worker_are_known_to_the_checks():
    # The catalogue follows the code: a new metric on Metrics() is accepted without edits here.
    metrics = Metrics()
    names = exposition_metric_names(metrics.exposition().decode())
    assert names <= worker_metric_names()


def _alert_names_in_template() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)", RULES_TEMPLATE.read_text(), flags=re.MULTILINE)


def test_every_alert_has_a_promtool_test_that_fires_and_one_that_stays_silent():
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    fired, silent = set(), set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    alerts = set(_alert_names_in_template())
    assert len(alerts) >= 8
    assert alerts - fired == set(), "alerts never shown to fire"
    assert alerts - silent == set(), "alerts never shown to stay silent"


def test_every_alert_has_a_runbook_section_in_the_chart_readme():
    readme = (CHART / "README.md").read_text()
    headings = {line[4:].strip() for line in readme.splitlines() if line.startswith("### ")}
    template = RULES_TEMPLATE.read_text()
    for alert in _alert_names_in_template():
        assert alert in headings, f"README.md has no '### {alert}' runbook section"
        assert f"#{alert.lower()}" in template, f"{alert}'s runbook_url does not point at its README anchor"


def test_rules_problems_finds_unknown_metrics_and_missing_annotations():
    rule_file = {"groups": [{"name": "g", "rules": [
        {"alert": "Good", "expr": "sum(rate(vcfscreen_studies_total[5m])) > 1 and up == 1",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "s", "description": "d", "runbook_url": "https://x/README.md#good"}},
        {"alert": "Bad", "expr": "rate(vcfscreen_studys_total[5m]) > kube_pod_container_status_restarts_total",
         "labels": {"severity": "page"}, "annotations": {"summary": "s", "runbook_url": "https://x/README.md#other"}},
    ]}]}
    problems = rules_problems(rule_file, known_metric_names())
    assert problems == [
        "rule Bad: metric vcfscreen_studys_total is exported by nothing this chart deploys or documents",
        "alert Bad has no description annotation",
        "alert Bad: runbook_url should end with #bad",
        "alert Bad: severity label must be warning or critical",
    ]
