"""The worker against the real broker, Orthanc and Prometheus: every study one result, failures dead-lettered.

One worker run (module fixture) takes: phantom studies stored in Orthanc (DICOMweb events),
one study as a file:// event, a corrupt study and a poison event. The tests then look at
the results topic, the dead-letter topic, the committed offsets, the worker's health
endpoints and what Prometheus scraped from it.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
import streaming_it
from streaming_it import (
    committed_offsets,
    keys_of,
    publish,
    read_records,
    run_topics,
    start_worker,
    statuses,
    unique_kafka,
)

from stack import stackctl
from streaming.dicomweb import DicomWeb
from streaming.events import event_for_dicomweb, event_for_folder
from streaming.procs import delete_topics
from streaming.submit import store_study_folder

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# Session fixtures shared by the streaming integration tests.
corrupt_study = streaming_it.corrupt_study
phantom_studies = streaming_it.phantom_studies
tiny_models_dir = streaming_it.tiny_models_dir


@pytest.fixture(scope="module")
def flow_run(kafka, pacs, prometheus_url, phantom_studies, corrupt_study, tiny_models_dir, tmp_path_factory):
    settings = unique_kafka(kafka, "flow")
    web = DicomWeb(pacs)
    stored = [(folder, store_study_folder(web, folder)) for folder, _uid in phantom_studies[1:4]]
    file_folder, file_uid = phantom_studies[4]
    events = [event_for_dicomweb(pacs.dicomweb_url, uid) for _f, uid in stored]
    events += [event_for_folder(file_folder, file_uid), event_for_folder(*corrupt_study)]
    poison = (b"poison-1", b'{"study_url": "http://x/studies/1", ')
    assert publish(settings, events, raw=[poison]) == 6
    expected = [uid for _f, uid in stored] + [file_uid]
    log = tmp_path_factory.mktemp("flow-logs") / "worker.log"
    # The Prometheus of the stack scrapes the worker's default metrics port.
    worker = start_worker(settings, tiny_models_dir, log, VCF_WORKER__METRICS_PORT=str(stackctl.WORKER_METRICS_PORT),
                          VCF_PACS__DICOMWEB_URL=pacs.dicomweb_url)
    try:
        worker.wait_assigned(120)
        results = read_records(settings, settings.results_topic, lambda rs: len(keys_of(rs)) >= 5, 300, [worker])
        letters = read_records(settings, settings.dlq_topic, lambda rs: len(rs) >= 2, 60, [worker])
        base = f"http://127.0.0.1:{stackctl.WORKER_METRICS_PORT}"
        health = {path: requests.get(base + path, timeout=5) for path in ("/healthz", "/readyz", "/metrics")}
        scraped = _scraped_ok(prometheus_url, expected_at_least=4)
    finally:
        exit_code = worker.stop()
    yield {"results": results, "letters": letters, "expected": expected, "corrupt": corrupt_study[1],
           "health": health, "scraped": scraped, "exit_code": exit_code, "kafka": settings, "worker": worker}
    delete_topics(kafka, run_topics(settings))


def _scraped_ok(prometheus_url: str, expected_at_least: int) -> float | None:
    query = 'max(vcfscreen_studies_total{outcome="ok", job="vcfscreen-worker"})'
    deadline = time.monotonic() + 30
    value = None
    while time.monotonic() < deadline:
        answer = requests.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5).json()
        found = answer["data"]["result"]
        value = float(found[0]["value"][1]) if found else None
        if value is not None and value >= expected_at_least:
            return value
        time.sleep(1)
    return value


def test_every_submitted_study_yields_exactly_one_result_key(flow_run):
    keys = keys_of(flow_run["results"])
    expected = set(flow_run["expected"]) | {flow_run["corrupt"]}
    assert set(keys) == expected
    assert all(count == 1 for count in keys.values()), keys
    by_key = statuses(flow_run["results"])
    assert {by_key[uid] for uid in flow_run["expected"]} == {"ok"}
    record = next(r for r in flow_run["results"] if r.key.decode() == flow_run["expected"][0])
    result = json.loads(record.value)
    assert result["study_instance_uid"] == flow_run["expected"][0] and result["pipeline_version"].startswith("vcfscreen")


def test_poison_and_corrupt_land_in_the_dead_letter_topic_with_their_reason(flow_run):
    letters = {json.loads(r.value)["code"]: (r.key, json.loads(r.value)) for r in flow_run["letters"]}
    assert set(letters) == {"invalid_json", "corrupt"}
    key, poison = letters["invalid_json"]
    assert key == b"poison-1" and poison["original"]["value_text"].startswith('{"study_url"')
    assert poison["original"]["offset"] >= 0 and "not JSON" in poison["message"]
    key, corrupt = letters["corrupt"]
    assert key == flow_run["corrupt"].encode() and "pixel data" in corrupt["message"]
    assert statuses(flow_run["results"])[flow_run["corrupt"]] == "error"


def test_the_worker_drains_commits_everything_and_exits_zero(flow_run):
    assert flow_run["exit_code"] == 0, flow_run["worker"].log_text()[-3000:]
    committed, ends = committed_offsets(flow_run["kafka"])
    assert sum(ends.values()) == 6
    for partition, end in ends.items():
        assert committed[partition] == (end if end else committed[partition]), (committed, ends)


def test_health_endpoints_and_prometheus_see_the_worker(flow_run):
    health = flow_run["health"]
    assert health["/healthz"].status_code == 200
    assert health["/readyz"].status_code == 200, health["/readyz"].text
    metrics = health["/metrics"].text
    for name in ("vcfscreen_studies_total", "vcfscreen_stage_duration_seconds_bucket", "vcfscreen_studies_in_flight",
                 "vcfscreen_queue_depth", "vcfscreen_consumer_lag_messages", "vcfscreen_dead_letters_total"):
        assert name in metrics
    assert 'vcfscreen_dead_letters_total{code="invalid_json"} 1.0' in metrics
    assert flow_run["scraped"] is not None and flow_run["scraped"] >= 4

