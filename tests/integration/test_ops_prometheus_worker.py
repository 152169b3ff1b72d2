"""The local stack's Prometheus scrapes a real `vcfscreen serve` and Triton, and PromQL counts
exactly the studies this test sent.

A handful of small phantom studies is written to disk, published as file:// StudyEvents with
`vcfscreen submit` on topics of this run, and screened by a `vcfscreen serve` subprocess
calling the stack's Triton; the worker listens on the port the stack's Prometheus scrapes
(job vcfscreen-worker). The counts must agree three ways: results on Kafka, the worker's
counter as Prometheus stores it, and Triton's request counter. SIGTERM then drains and
exits 0, as the chart's terminationGracePeriodSeconds relies on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from ops.metric_catalog import dashboard_queries, exposition_metric_names
from stack import stackctl
from streaming.kafka_clients import make_consumer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STUDIES = 3
SEED = 20251126
DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "vcfscreen" / "dashboards" / "vcfscreen.json"
VCFSCREEN = Path(sys.executable).with_name("vcfscreen")
WORKER_JOB = "vcfscreen-worker"  # stack/prometheus/prometheus.yml.in


def dashboard_worker_names() -> set[str]:
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    return {name for _, _, names in queries for name in names if name.startswith("vcfscreen_")}


def prom_value(prometheus_url: str, expr: str) -> float | None:
    answer = requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10).json()
    if answer.get("status") != "success":
        raise AssertionError(f"Prometheus refused {expr!r}: {answer.get('error')}")
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for(predicate, timeout_s: float, what: str, log: Path | None = None, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"vcfscreen serve exited with {proc.returncode} while waiting for {what}:\n{tail(log)}")
        last = predicate()
        if last:
            return last
        time.sleep(1.0)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}; last answer {last!r}\n{tail(log)}")


def tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "worker log (last lines):\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def run_cli(args: list[str], env: dict[str, str], timeout_s: float) -> str:
    proc = subprocess.run([str(VCFSCREEN), *args], env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0:
        pytest.fail(f"vcfscreen {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stdout


def test_prometheus_counts_the_studies_a_real_worker_screened(kafka, triton, prometheus_url, tmp_path):
    run = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCF_")}
    env.update({
        "VCF_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "VCF_KAFKA__STUDIES_TOPIC": f"it-ops-studies-{run}",
        "VCF_KAFKA__RESULTS_TOPIC": f"it-ops-results-{run}",
        "VCF_KAFKA__DLQ_TOPIC": f"it-ops-dlq-{run}",
        "VCF_KAFKA__GROUP_ID": f"it-ops-{run}",
        "VCF_MODELS__BACKEND": "triton",
        "VCF_TRITON__URL": triton.url,
        "VCF_TRITON__HTTP_URL": triton.http_url,
        "VCF_TRITON__METRICS_URL": triton.metrics_url,
        "VCF_WORKER__BIND_HOST": stackctl.HOST,
        "VCF_WORKER__METRICS_PORT": str(stackctl.WORKER_METRICS_PORT),
        "VCF_WORKER__DRAIN_GRACE_S": "60",
    })
    studies = tmp_path / "studies"
    run_cli(["phantom", str(studies), "--studies", str(STUDIES), "--seed", str(SEED), "--fast"], env, 600)
    assert len([p for p in studies.iterdir() if p.is_dir()]) == STUDIES

    triton_before = prom_value(prometheus_url, 'sum(nv_inference_request_success{job="triton"})') or 0.0
    published = run_cli(["submit", str(studies)], env, 120)
    assert f"published {STUDIES} study events" in published

    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(VCFSCREEN), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://{stackctl.HOST}:{stackctl.WORKER_METRICS_PORT}"

        def ready() -> bool:
            try:
                return requests.get(f"{base}/readyz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(ready, 180, "the worker's /readyz", log, proc)
        wait_for(
            lambda: {t["labels"]["job"]: t["health"] for t in requests.get(f"{prometheus_url}/api/v1/targets", timeout=5)
                     .json()["data"]["activeTargets"]}.get(WORKER_JOB) == "up",
            60, "Prometheus to scrape the worker", log, proc,
        )
        # The number this test produced, as Prometheus stores the worker's counter.
        query = f'sum(vcfscreen_studies_total{{job="{WORKER_JOB}"}})'
        counted = wait_for(lambda: prom_value(prometheus_url, query) == STUDIES, 600, f"{query} == {STUDIES}", log, proc)
        assert counted is True

        # Kafka agrees: one result per study, and the outcomes match the counter's labels.
        consumer = make_consumer(kafka, env["VCF_KAFKA__RESULTS_TOPIC"], group_id=f"it-ops-check-{run}")
        try:
            results: list = []
            deadline = time.monotonic() + 60
            while len(results) < STUDIES and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=1000).values():
                    results.extend(records)
        finally:
            consumer.close()
        assert len(results) == STUDIES, f"{len(results)} results on Kafka for {STUDIES} studies:\n{tail(log)}"
        statuses = Counter(json.loads(record.value)["status"] for record in results)
        for outcome in ("ok", "not_eligible", "error"):
            expr = f'sum(vcfscreen_studies_total{{job="{WORKER_JOB}",outcome="{outcome}"}})'
            assert prom_value(prometheus_url, expr) == statuses.get(outcome, 0), f"{expr} against results {dict(statuses)}"

        # Triton served them, and Prometheus saw that too.
        triton_after = wait_for(
            lambda: (v := prom_value(prometheus_url, 'sum(nv_inference_request_success{job="triton"})')) is not None
            and v >= triton_before + STUDIES and v,
            60, "Triton's request counter to grow by the studies screened", log, proc,
        )
        assert triton_after >= triton_before + STUDIES

        # The live worker exports every vcfscreen_ metric the dashboard reads.
        live = exposition_metric_names(requests.get(f"{base}/metrics", timeout=5).text)
        assert sorted(dashboard_worker_names() - live) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                pytest.fail(f"vcfscreen serve did not exit within 90 s of SIGTERM:\n{tail(log)}")
    assert proc.returncode == 0, f"vcfscreen serve exited {proc.returncode} after SIGTERM:\n{tail(log)}"
