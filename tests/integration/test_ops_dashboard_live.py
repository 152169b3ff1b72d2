"""The Grafana dashboard against live metrics: Triton's own :8002/metrics, the worker's /metrics
server, and the local stack's Prometheus running every panel's query.

The unit tests check the dashboard against the worker's code and Triton's documented names;
these check the documented names against a real Triton and the queries against a real
Prometheus (a query Prometheus refuses draws an error panel in Grafana).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests

from ops.metric_catalog import (
    TRITON_GPU_METRICS,
    TRITON_METRICS,
    dashboard_queries,
    exposition_metric_names,
)
from stack import stackctl
from streaming.metrics import HealthServer, Metrics

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "vcfscreen" / "dashboards" / "vcfscreen.json"
# Grafana's variables as Grafana would substitute them for a 2 s scrape interval.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$namespace": ".*"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def used_names() -> set[str]:
    return set().union(*(names for _, _, names in dashboard_queries(dashboard())))


def live_names(url: str) -> set[str]:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return exposition_metric_names(response.text)


def test_triton_exports_the_metrics_the_dashboard_and_alerts_read(triton):
    names = live_names(triton.metrics_url)
    expected = set(TRITON_METRICS) | {n for n in used_names() if n.startswith("nv_") and n not in TRITON_GPU_METRICS}
    missing = sorted(expected - names)
    assert not missing, f"Triton at {triton.metrics_url} does not export {missing}; it exports {sorted(n for n in names if n.startswith('nv_'))}"


@pytest.mark.gpu
def test_triton_exports_the_gpu_metrics(triton):
    names = live_names(triton.metrics_url)
    if not any(name.startswith("nv_gpu_") for name in names):
        pytest.skip(f"no GPU: Triton at {triton.metrics_url} exports no nv_gpu_* metric, so "
                    f"{', '.join(TRITON_GPU_METRICS)} (the dashboard's GPU panels) are unverified here")
    missing = sorted(set(TRITON_GPU_METRICS) - names)
    assert not missing, f"Triton on a GPU node does not export {missing}"


def test_the_worker_metrics_server_exports_the_dashboard_metrics():
    server = HealthServer(Metrics(), "127.0.0.1", 0).start()
    try:
        names = live_names(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.stop()
    ours = {name for name in used_names() if name.startswith("vcfscreen_")}
    assert ours, "the dashboard reads no vcfscreen_ metric"
    assert sorted(ours - names) == []


def _query(prometheus_url: str, expr: str) -> dict:
    return requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10).json()


def _substitute(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    if "$" in expr:
        raise AssertionError(f"unsubstituted Grafana variable in {expr!r}")
    return expr


def test_prometheus_runs_every_dashboard_query(prometheus_url, triton):
    metrics = Metrics()
    # Give the labelled families a series each, as a working worker has.
    metrics.consumer_lag.labels(topic="ct.studies", partition="0").set(3)
    metrics.dead_letters.labels(code="corrupt_study").inc()
    metrics.stage_seconds.labels(stage="infer").observe(1.5)
    metrics.study_seconds.observe(4.0)
    metrics.studies.labels(outcome="ok").inc(2)
    server = HealthServer(metrics, stackctl.HOST, stackctl.WORKER_METRICS_PORT).start()
    try:
        wanted = {name for name in used_names() if name not in TRITON_GPU_METRICS}
        deadline = time.monotonic() + 60
        missing = wanted
        while time.monotonic() < deadline:
            values = requests.get(f"{prometheus_url}/api/v1/label/__name__/values", timeout=10).json()["data"]
            missing = wanted - set(values)
            if not missing:
                break
            time.sleep(1)
        assert not missing, f"Prometheus never received {sorted(missing)} from the worker and Triton targets"

        failures = []
        for where, expr, _ in dashboard_queries(dashboard()):
            if re.match(r"^\s*label_values\(", expr):
                continue  # a Grafana function, not PromQL; its metric is checked above
            answer = _query(prometheus_url, _substitute(expr))
            if answer.get("status") != "success":
                failures.append(f"{where}: {answer.get('error')}")
        assert failures == []
        # A worker gauge read through the dashboard's own query comes back with the served value.
        # (The names above may come from an earlier run kept in Prometheus' storage: wait for a
        # scrape of this server before reading its value.)
        query = _substitute('sum(max by (topic, partition) (vcfscreen_consumer_lag_messages{namespace=~"$namespace"}))')
        deadline = time.monotonic() + 60
        while not (result := _query(prometheus_url, query)["data"]["result"]) and time.monotonic() < deadline:
            time.sleep(1)
        assert result, "Prometheus never scraped the consumer-lag gauge of this worker"
        assert float(result[0]["value"][1]) >= 3
    finally:
        server.stop()
