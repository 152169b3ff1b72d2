"""Triton stopped for a while delays results but loses none (needs the triton backend).

It stops and restarts the stack's Triton (stackctl down/up triton). While Triton is down the
worker's inference retries back off (VCF_WORKER__MAX_RETRIES / RETRY_BACKOFF_*), intake pauses
when max_in_flight studies wait, /readyz answers 503; when Triton is back every study gets its result, exactly once,
and nothing goes to the dead-letter topic.
"""

from __future__ import annotations

import socket
import time

import pytest
import requests
import streaming_it
from streaming_it import keys_of, publish, read_records, start_worker

from stack import stackctl
from streaming.events import event_for_folder
from streaming.procs import TopicReader

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# Fixtures shared by the streaming integration tests.
topics = streaming_it.topics
phantom_studies = streaming_it.phantom_studies
tiny_models_dir = streaming_it.tiny_models_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_triton_stopped_for_a_while_delays_results_but_loses_none(topics, triton, phantom_studies, tmp_path):
    settings = topics("triton-outage")
    events = [event_for_folder(folder, uid) for folder, uid in phantom_studies]
    expected = {uid for _f, uid in phantom_studies}
    port = free_port()
    env = {
        "VCF_MODELS__BACKEND": "triton", "VCF_TRITON__URL": triton.url, "VCF_TRITON__HTTP_URL": triton.http_url,
        "VCF_TRITON__MAX_RETRIES": "1", "VCF_TRITON__RETRY_BACKOFF_S": "0.5",
        # A retry budget longer than the outage: about 5 minutes of back-off.
        "VCF_WORKER__MAX_RETRIES": "40", "VCF_WORKER__RETRY_BACKOFF_S": "1", "VCF_WORKER__RETRY_BACKOFF_MAX_S": "8",
        "VCF_WORKER__METRICS_PORT": str(port), "VCF_WORKER__MAX_IN_FLIGHT": "2",
    }
    # The first two studies create the topic: a consumer does not create the topic it subscribes to,
    # so a worker started on a topic that does not exist yet has no partition to wait for.
    assert publish(settings, events[:2]) == 2
    worker = start_worker(settings, stackctl.ROOT / "engine" / "models", tmp_path / "worker.log", **env)
    base = f"http://127.0.0.1:{port}"
    restarted = False
    try:
        worker.wait_assigned(180)
        read_records(settings, settings.results_topic, lambda rs: len(rs) >= 1, 300, [worker])

        stackctl.down(["triton"])
        try:
            assert publish(settings, events[2:]) == len(events) - 2
            time.sleep(20)
            during = read_records(settings, settings.results_topic, lambda rs: True, 5)
            assert len(keys_of(during)) < len(expected), "results must wait for Triton"
            ready = requests.get(base + "/readyz", timeout=5)
            assert ready.status_code == 503 and "Triton" in ready.text
            assert requests.get(base + "/healthz", timeout=5).status_code == 200, "the worker stays alive"
        finally:
            stackctl.up(["triton"])
            restarted = True

        after = read_records(settings, settings.results_topic, lambda rs: set(keys_of(rs)) >= expected, 600, [worker])
        metrics = requests.get(base + "/metrics", timeout=5).text
    finally:
        if not restarted:
            stackctl.up(["triton"])
        exit_code = worker.stop()
    keys = keys_of(after)
    assert set(keys) == expected and all(n == 1 for n in keys.values()), keys
    assert 'vcfscreen_retries_total{stage="infer"} 0.0' not in metrics
    reader = TopicReader(settings, settings.dlq_topic)
    try:
        for _ in range(6):
            reader.poll(500)
        assert reader.records == [], "no study may be dead-lettered for an outage within the retry budget"
    finally:
        reader.close()
    assert exit_code == 0
