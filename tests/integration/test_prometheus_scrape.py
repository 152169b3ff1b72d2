"""Prometheus from the local stack scrapes Triton and a vcfscreen metrics endpoint."""

from __future__ import annotations

import random
import time

import pytest
import requests

from stack import stackctl
from streaming.metrics import HealthServer, Metrics

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}; last answer: {last!r}")


def target_health(prometheus_url: str) -> dict[str, str]:
    data = requests.get(f"{prometheus_url}/api/v1/targets", timeout=5).json()["data"]
    return {t["labels"]["job"]: t["health"] for t in data["activeTargets"]}


def test_triton_and_worker_targets_are_up(prometheus_url, triton):
    produced = random.randint(2, 10_000)  # a value no earlier run left in the TSDB
    metrics = Metrics()
    metrics.studies.labels(outcome="ok").inc(produced)
    metrics.findings.labels(grade="3").inc()
    server = HealthServer(metrics, stackctl.HOST, stackctl.WORKER_METRICS_PORT).start()
    try:
        wait_for(
            lambda: (h := target_health(prometheus_url)).get("triton") == "up"
            and h.get("vcfscreen-worker") == "up",
            60,
            "Prometheus to report the triton and vcfscreen-worker targets up",
        )

        def studies_ok() -> float | None:
            query = 'vcfscreen_studies_total{outcome="ok"}'
            result = requests.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
            values = result["data"]["result"]
            value = float(values[0]["value"][1]) if values else None
            return value if value == produced else None

        assert wait_for(studies_ok, 30, "the scraped vcfscreen_studies_total") == produced
    finally:
        server.stop()
