"""The Kafka sink: a Job is reported done once every record is acknowledged, or failed once."""

from __future__ import annotations

from streaming_fakes import FakeBroker, FakeProducer, make_job

from streaming.metrics import Metrics
from streaming.sinks import KafkaSink, OutRecord


def records(n):
    return [OutRecord(topic="out", key=b"k", value=f"v{i}".encode(), kind="result") for i in range(n)]


def test_done_only_after_every_record_is_acknowledged():
    producer = FakeProducer(FakeBroker())
    reports = []
    sink = KafkaSink(producer, Metrics(), lambda job, error: reports.append((job, error)))
    job = make_job()
    job.outputs = records(2)
    producer.hold()
    sink.send(job)
    assert reports == [] and sink.outstanding == 1 and job.sent
    producer.release()
    assert reports == [(job, None)] and sink.outstanding == 0
    assert job.stage_ms["produce"] >= 0
    assert [r.value for r in producer.acked] == [b"v0", b"v1"]


def test_a_failed_send_is_reported_once():
    producer = FakeProducer(FakeBroker())
    producer.fail_next = 2
    reports = []
    sink = KafkaSink(producer, Metrics(), lambda job, error: reports.append(error))
    job = make_job()
    job.outputs = records(3)
    sink.send(job)
    assert len(reports) == 1 and isinstance(reports[0], RuntimeError)


def test_cancelled_jobs_are_not_sent():
    producer = FakeProducer(FakeBroker())
    reports = []
    sink = KafkaSink(producer, Metrics(), lambda job, error: reports.append(job))
    job = make_job()
    job.outputs, job.cancelled = records(1), True
    sink.send(job)
    assert reports == [job] and not job.sent and producer.acked == []
