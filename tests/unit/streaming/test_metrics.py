from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from streaming.metrics import HealthServer, Metrics


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_every_metric_is_namespaced_and_fresh_per_registry():
    a, b = Metrics(), Metrics()
    a.studies.labels(outcome="ok").inc()
    fams = families(a.exposition().decode())
    assert fams and all(name.startswith("vcfscreen_") for name in fams)
    assert {"vcfscreen_studies", "vcfscreen_stage_duration_seconds", "vcfscreen_studies_in_flight",
            "vcfscreen_queue_depth", "vcfscreen_findings", "vcfscreen_consumer_lag_messages",
            "vcfscreen_retries", "vcfscreen_dead_letters"} <= set(fams)
    ok_b = [s.value for s in families(b.exposition().decode())["vcfscreen_studies"].samples
            if s.name == "vcfscreen_studies_total" and s.labels["outcome"] == "ok"]
    assert ok_b == [0.0]


def test_health_server_endpoints():
    ready = {"ok": False}
    server = HealthServer(Metrics(), "127.0.0.1", 0, ready=lambda: (ready["ok"], "broker: down")).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        not_ready = requests.get(f"{base}/readyz", timeout=5)
        assert not_ready.status_code == 503 and "broker: down" in not_ready.text
        ready["ok"] = True
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
        metrics = requests.get(f"{base}/metrics", timeout=5)
        assert metrics.status_code == 200 and "vcfscreen_studies_total" in metrics.text
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
    finally:
        server.stop()
