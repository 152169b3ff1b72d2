"""The whole worker on an in-memory broker: real stages and screening core, stand-in backend.

What is checked is what a lost or duplicated study would break: commits never pass an
unfinished record, backpressure pauses intake, poison events and bad studies leave records
while the rest flow on, transient failures are retried within a bound, revocation and
shutdown commit only finished work.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from streaming_fakes import make_settings

from engine.errors import TransientError
from streaming.fetch import Fetcher
from streaming.worker import SEND_ATTEMPTS, WorkerFailure


class GatedFetcher(Fetcher):
    """Holds the fetch of chosen studies until their gate opens; can fail transiently."""

    def __init__(self, settings, gated: set[str] = frozenset(), fail_always: set[str] = frozenset()):
        super().__init__(settings.pacs)
        self.gate = threading.Event()
        self.gated = set(gated)
        self.fail_always = set(fail_always)
        self.attempts: dict[str, int] = {}

    def fetch(self, event):
        uid = event.study_instance_uid
        self.attempts[uid] = self.attempts.get(uid, 0) + 1
        if uid in self.fail_always:
            raise TransientError("PACS answered HTTP 503 (test)")
        if (uid in self.gated or "*" in self.gated) and not self.gate.wait(timeout=30):
            raise AssertionError("gate never opened")
        return super().fetch(event)


def counts(counter, label: str, *values: str) -> list[float]:
    """The counter's value at each of ``values`` of its ``label``."""
    return [counter.labels(**{label: value})._value.get() for value in values]


def result_keys(harness) -> list[str]:
    return [r.key.decode() for r in harness.results()]


def test_every_study_gets_one_result_and_offsets_reach_the_end(harness_factory, study_folders):
    h = harness_factory()
    for i, (folder, uid) in enumerate(study_folders):
        h.submit(folder, uid, partition=i % 2)
    h.run_until(lambda: len(h.results()) == 4 and h.committed(0) == 2 and h.committed(1) == 2, what="4 results")
    assert sorted(result_keys(h)) == sorted(uid for _f, uid in study_folders)
    assert {json.loads(r.value)["status"] for r in h.results()} == {"ok"}
    metrics = h.worker.metrics
    assert metrics.studies.labels(outcome="ok")._value.get() == 4
    assert metrics.stage_seconds.labels(stage="infer")._sum.get() > 0
    h.worker.step()
    assert metrics.in_flight._value.get() == 0


def test_commits_wait_for_a_slow_first_study(harness_factory, study_folders):
    settings = make_settings()
    (slow_folder, slow_uid), *rest = study_folders
    fetcher = GatedFetcher(settings, gated={slow_uid})
    h = harness_factory(settings, fetcher=fetcher)
    h.submit(slow_folder, slow_uid, partition=0)
    for folder, uid in rest:
        h.submit(folder, uid, partition=0)
    # The three later studies of the partition finish first...
    h.run_until(lambda: len(h.results()) == 3, what="the three fast results")
    for _ in range(10):
        h.worker.step()
    assert slow_uid not in result_keys(h)
    # ... but nothing is committed past the unfinished offset 0.
    assert h.committed(0) is None
    assert all(offsets.get(tp) is None or offsets[tp] == 0 for offsets in h.broker.commit_log for tp in offsets)
    fetcher.gate.set()
    h.run_until(lambda: h.committed(0) == 4, what="the commit to move to 4 once offset 0 is done")
    assert sorted(result_keys(h)) == sorted(uid for _f, uid in study_folders)


def test_backpressure_pauses_intake_and_keeps_polling(harness_factory, study_folders):
    settings = make_settings(max_in_flight=2)
    fetcher = GatedFetcher(settings, gated={"*"})
    h = harness_factory(settings, fetcher=fetcher)
    for folder, uid in study_folders:
        h.submit(folder, uid, partition=0)
    h.run_until(lambda: len(h.worker.jobs) == 2, what="two studies in flight")
    for _ in range(20):
        h.worker.step()
    assert len(h.worker.jobs) == 2, "intake must stop at max_in_flight"
    assert h.consumer.paused() == h.consumer.assignment()
    assert h.consumer.polls_while_paused >= 10, "poll() must go on while paused (group membership)"
    fetcher.gate.set()
    h.run_until(lambda: len(h.results()) == 4, what="all results after the gate opens")
    assert h.worker.resume_count >= 1
    h.run_until(lambda: not h.consumer.paused(), what="partitions resumed")


def test_poison_events_are_dead_lettered_and_the_rest_flow(harness_factory, study_folders):
    h = harness_factory()
    (folder, uid), (other_folder, other_uid) = study_folders[:2]
    h.submit_raw(b"k1", b"{not json", partition=0)
    h.submit(folder, uid, partition=0)
    h.submit_raw(b"k2", json.dumps({"study_url": "file:///x"}).encode(), partition=0)
    wrong_key = json.dumps({"study_url": f"http://127.0.0.1:8042/dicom-web/studies/{other_uid}",
                            "study_instance_uid": other_uid, "submitted_at": "2025-01-01T00:00:00Z"})
    h.submit_raw(b"1.2.3", wrong_key.encode(), partition=0)
    h.submit(other_folder, other_uid, partition=0)
    h.run_until(lambda: len(h.results()) == 2 and len(h.dead_letters()) == 3 and h.committed(0) == 5,
                what="2 results and 3 dead letters")
    records = sorted(h.dead_letters(), key=lambda r: json.loads(r.value)["original"]["offset"])
    letters = [json.loads(r.value) for r in records]
    assert [(d["code"], d["original"]["offset"]) for d in letters] == [
        ("invalid_json", 0), ("invalid_event", 2), ("uid_mismatch", 3)]
    assert letters[0]["original"]["value_text"] == "{not json"
    assert "study_instance_uid: Field required" in letters[1]["message"]
    assert all(d["worker_id"] == "unit-worker" for d in letters)
    assert [r.key for r in records] == [b"k1", b"k2", b"1.2.3"]
    assert h.worker.metrics.dead_letters.labels(code="invalid_json")._value.get() == 1


def test_permanent_errors_are_results_and_corrupt_studies_also_dead_letters(
        harness_factory, study_folders, corrupt_folder, short_folder):
    h = harness_factory()
    corrupt_uid = corrupt_folder[1]
    h.submit(*corrupt_folder)
    h.submit(*short_folder)
    h.submit(*study_folders[0])
    h.run_until(lambda: len(h.results()) == 3 and h.committed(0) == 3, what="three results")
    by_key = {r.key.decode(): json.loads(r.value) for r in h.results()}
    assert by_key[study_folders[0][1]]["status"] == "ok"
    assert by_key[short_folder[1]]["status"] == "not_eligible"
    corrupt = by_key[corrupt_uid]
    assert corrupt["status"] == "error" and corrupt["reason"].startswith("corrupt: 0010.dcm")
    # Only the undecodable study is dead-lettered; not eligible is a result and nothing more.
    letters = [json.loads(r.value) for r in h.dead_letters()]
    assert [(d["code"], d["study_instance_uid"]) for d in letters] == [("corrupt", corrupt_uid)]
    assert letters[0]["message"] == corrupt["reason"]
    assert counts(h.worker.metrics.studies, "outcome", "error", "not_eligible") == [1, 1]
    assert counts(h.worker.metrics.not_screened, "code", "corrupt", "not_eligible") == [1, 1]


def test_a_study_whose_spine_the_models_cannot_see_is_a_result_counted_by_its_reason(harness_factory, study_folders):
    # A segmenter that finds nothing (wrong weights, a study of another body part) must not turn
    # into negative results: each study is not_eligible, and ops see why on the metrics.
    h = harness_factory()
    h.backend.finds_nothing = True
    for folder, uid in study_folders[:2]:
        h.submit(folder, uid)
    h.run_until(lambda: len(h.results()) == 2 and h.committed(0) == 2, what="two results")
    codes = {json.loads(r.value)["reason"].split(":")[0] for r in h.results()}
    assert codes == {"no_spine"} and not h.dead_letters()
    metrics = h.worker.metrics
    assert counts(metrics.studies, "outcome", "not_eligible", "ok") == [2, 0]
    assert counts(metrics.not_screened, "code", "no_spine") == [2]
    assert counts(metrics.findings, "grade", "0") == [0]


def test_transient_failures_are_retried_within_the_bound_then_dead_lettered(harness_factory, study_folders):
    settings = make_settings(max_retries=3)
    (bad_folder, bad_uid), (good_folder, good_uid) = study_folders[:2]
    fetcher = GatedFetcher(settings, fail_always={bad_uid})
    h = harness_factory(settings, fetcher=fetcher)
    h.submit(bad_folder, bad_uid)
    h.submit(good_folder, good_uid)
    h.run_until(lambda: len(h.results()) == 1 and len(h.dead_letters()) == 1 and h.committed(0) == 2,
                what="one result, one transient dead letter")
    assert fetcher.attempts[bad_uid] == 4  # the first try and three retries
    letter = json.loads(h.dead_letters()[0].value)
    assert letter["code"] == "transient" and "gave up after 3 retries in fetch" in letter["message"]
    assert result_keys(h) == [good_uid]
    assert h.worker.metrics.retries.labels(stage="fetch")._value.get() == 3


def test_inference_unavailable_for_a_while_delays_but_loses_nothing(harness_factory, study_folders):
    h = harness_factory(make_settings(max_retries=5))
    h.backend.transient_failures = 3
    h.submit(*study_folders[0])
    h.run_until(lambda: len(h.results()) == 1, what="the result after inference came back")
    assert json.loads(h.results()[0].value)["status"] == "ok"
    assert h.worker.metrics.retries.labels(stage="infer")._value.get() == 3


def test_revocation_commits_finished_work_and_abandons_the_rest(harness_factory, study_folders):
    settings = make_settings(revoke_grace_s=0.3)
    (slow_folder, slow_uid), (fast_folder, fast_uid) = study_folders[:2]
    fetcher = GatedFetcher(settings, gated={slow_uid})
    h = harness_factory(settings, fetcher=fetcher)
    h.submit(fast_folder, fast_uid, partition=1)
    h.submit(slow_folder, slow_uid, partition=0)
    h.run_until(lambda: len(h.results()) == 1 and h.committed(1) == 1, what="the fast study")
    assignment = h.consumer.assignment()
    h.consumer.rebalance(assignment)  # revoke everything, then get the same partitions back
    h.worker.step()
    assert h.committed(0) is None, "the unfinished study must not be committed on revocation"
    fetcher.gate.set()
    # The abandoned study is re-delivered (offset 0 again) and screened: at least once.
    h.run_until(lambda: h.committed(0) == 1, what="the re-delivered study to be committed")
    keys = result_keys(h)
    assert set(keys) == {slow_uid, fast_uid}
    assert keys.count(fast_uid) == 1


def test_a_send_that_fails_is_sent_again(harness_factory, study_folders):
    h = harness_factory()
    h.producer.fail_next = SEND_ATTEMPTS - 1
    h.submit(*study_folders[0])
    h.run_until(lambda: h.committed(0) == 1, what="the commit after the resend")
    assert result_keys(h) == [study_folders[0][1]]


def test_output_that_cannot_be_delivered_stops_the_worker_without_committing(harness_factory, study_folders):
    h = harness_factory()
    h.producer.fail_next = SEND_ATTEMPTS
    h.submit(*study_folders[0])
    with pytest.raises(WorkerFailure):
        h.worker.run()
    assert h.committed(0) is None
    assert h.consumer.closed


def test_stop_drains_in_flight_studies_then_commits(harness_factory, study_folders):
    settings = make_settings()
    fetcher = GatedFetcher(settings, gated={"*"})
    h = harness_factory(settings, fetcher=fetcher)
    for folder, uid in study_folders[:3]:
        h.submit(folder, uid)
    h.run_until(lambda: len(h.worker.jobs) == 3, what="three studies in flight")
    h.worker.request_stop()
    assert h.worker.ready() == (False, "stopping")
    threading.Timer(0.2, fetcher.gate.set).start()
    h.worker.run()  # drains, commits, closes
    assert len(h.results()) == 3 and h.committed(0) == 3
    assert h.consumer.closed and h.producer.closed


def test_health_reports_a_stalled_loop(harness_factory):
    h = harness_factory(make_settings(stall_after_s=0.05))
    h.run_until(lambda: h.worker.joined, what="assignment")
    h.worker._refresh_lag()
    assert h.worker.live()[0] and h.worker.ready() == (True, "ready")
    h.worker.heartbeat -= 1.0
    ok, detail = h.worker.live()
    assert not ok and "stalled" in detail


def test_a_worker_first_assigned_nothing_rejoins_once(harness_factory, monkeypatch):
    """After a broker restart a member may join without the topic's metadata and be assigned
    nothing for good (kafka-python 3); the worker leaves and joins again, once."""
    import streaming.worker as worker_module

    monkeypatch.setattr(worker_module, "REJOIN_IDLE_S", 0.05)
    harness = harness_factory()
    harness.consumer.rebalance(set())  # the first assignment is empty
    harness.worker.step()
    assert harness.consumer.assignment() == set() and getattr(harness.consumer, "unsubscribes", 0) == 0
    time.sleep(0.1)
    harness.worker.step()  # idle past the bound: rejoin
    assert harness.consumer.unsubscribes == 1 and harness.consumer.topics_ == [harness.settings.kafka.studies_topic]
    harness.worker.step()  # the new subscription brings the partitions
    assert len(harness.consumer.assignment()) == 2
    harness.consumer.rebalance(set())
    harness.worker.step()
    time.sleep(0.1)
    harness.worker.step()
    assert harness.consumer.unsubscribes == 1, "after having partitions, an empty assignment is the group's choice"
