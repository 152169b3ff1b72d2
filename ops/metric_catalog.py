"""Which metric names exist, and the checks that dashboards and alert rules read only those.

The worker's names come from its own code (``streaming.metrics.Metrics().exposition()``),
Triton's and kube-state-metrics' from their documentation (listed below; the Triton list is
checked against a live Triton by tests/integration/test_ops_dashboard_live.py).
"""

from __future__ import annotations

import re

from collections.abc import Iterable, Iterator
from typing import Any


from ops.promql import grafana_variable_metric_names, metric_names

# Triton Inference Server's metrics the dashboard and alerts may use (Triton's metrics docs).
TRITON_METRICS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
)
# Exported by Triton only where it sees an NVIDIA GPU.
TRITON_GPU_METRICS = ("nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes")
# kube-state-metrics, used by the pod and deployment alerts (not exported on this machine).
KUBE_STATE_METRICS = (
    "kube_pod_container_status_restarts_total",
    "kube_deployment_status_replicas_available",
    "kube_deployment_status_replicas_unavailable",
)
# Written by Prometheus itself for every target.
PROMETHEUS_METRICS = ("up",)

# What the dashboard must show (the operations brief): each group needs one of its names.
DASHBOARD_MUST_SHOW = {
    "throughput": ("vcfscreen_studies_total",),
    "latency per stage": ("vcfscreen_stage_duration_seconds_bucket",),
    "consumer lag": ("vcfscreen_consumer_lag_messages",),
    "in flight": ("vcfscreen_studies_in_flight",),
    "dead letters": ("vcfscreen_dead_letters_total",),
    "findings by grade": ("vcfscreen_findings_total",),
    "Triton queue time": ("nv_inference_queue_duration_us",),
    "Triton compute time": ("nv_inference_compute_infer_duration_us",),
    "GPU use": ("nv_gpu_utilization",),
}

_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def exposition_metric_names(text: str) -> set[str]:
    """Every series name a Prometheus text exposition can carry, including families that have
    no sample yet (a labelled gauge before its first label value, e.g. consumer lag).

    Sample names are taken as written, which is what Prometheus stores: Triton's counters
    carry no ``_total`` suffix, and a parser that normalises counter names would hide that."""
    names: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                family, kind = parts[2], parts[3]
                if kind == "counter" and family.endswith("_total"):  # some writers name the family so
                    family = family[: -len("_total")]
                names.update(family + suffix for suffix in _SAMPLE_SUFFIXES.get(kind, ("",)))
            continue
        names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def worker_metric_names() -> set[str]:
    from streaming.metrics import Metrics

    return exposition_metric_names(Metrics().exposition().decode())


def known_metric_names() -> set[str]:
    return worker_metric_names() | set(TRITON_METRICS) | set(TRITON_GPU_METRICS)


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, set[str]]]:
    """(where, query, metric names) for every panel target and template variable."""
    queries = []
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            queries.append((f"panel {panel.get('title')!r} target {target.get('refId')}", expr, metric_names(expr)))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query or "")
            queries.append((f"variable ${variable.get('name')}", text, grafana_variable_metric_names(text)))
    return queries


def dashboard_problems(dashboard: dict[str, Any], known: set[str]) -> list[str]:
    """Why a Grafana dashboard would mislead: unknown metrics, empty panels, broken layout."""
    problems = []
    for where, expr, names in dashboard_queries(dashboard):
        if not names:
            problems.append(f"{where}: reads no metric ({expr!r})")
        for name in sorted(names - known):
            problems.append(f"{where}: metric {name} is exported by neither the worker nor Triton")
    ids = [panel.get("id") for panel in _panels(dashboard.get("panels", []))]
    for panel in _panels(dashboard.get("panels", [])):
        title = panel.get("title")
        if "gridPos" not in panel:
            problems.append(f"panel {title!r} has no gridPos")
        if panel.get("type") == "row":
            continue
        if not panel.get("targets"):
            problems.append(f"panel {title!r} has no query")
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {title!r} does not use the $datasource variable")
    duplicates = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    if duplicates:
        problems.append(f"panel ids used twice: {duplicates}")
    used = set().union(*(names for _, _, names in dashboard_queries(dashboard)))
    for topic, wanted in DASHBOARD_MUST_SHOW.items():
        if not used.intersection(wanted):
            problems.append(f"the dashboard shows no {topic} (none of {', '.join(wanted)})")
    return problems


def rules_problems(rule_file: dict[str, Any], known: set[str]) -> list[str]:
    """Alert rules that read a metric nobody exports, or lack what the on-call person needs."""
    allowed = known | set(KUBE_STATE_METRICS) | set(PROMETHEUS_METRICS)
    problems = []
    for group in rule_file.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            for metric in sorted(metric_names(rule.get("expr", "")) - allowed):
                problems.append(f"rule {name}: metric {metric} is exported by nothing this chart deploys or documents")
            if "alert" in rule:
                annotations = rule.get("annotations", {})
                for key in ("summary", "description", "runbook_url"):
                    if not annotations.get(key):
                        problems.append(f"alert {name} has no {key} annotation")
                anchor = "#" + name.lower()
                if not str(annotations.get("runbook_url", "")).endswith(anchor):
                    problems.append(f"alert {name}: runbook_url should end with {anchor}")
                if rule.get("labels", {}).get("severity") not in {"warning", "critical"}:
                    problems.append(f"alert {name}: severity label must be warning or critical")
    return problems


def alert_names(rule_file: dict[str, Any]) -> list[str]:
    return [rule["alert"] for group in rule_file.get("groups", []) for rule in group.get("rules", []) if "alert" in rule]
