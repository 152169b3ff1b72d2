"""A message produced and consumed through the real broker with the project's clients."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import TopicPartition

from stack import kafka_probe, stackctl
from stack.services import NODE_ID
from streaming.kafka_clients import make_consumer, make_producer
from streaming.procs import delete_topics

pytestmark = pytest.mark.integration


def test_produce_consume_commit_round_trip(kafka):
    topic = f"it-roundtrip-{uuid.uuid4().hex[:8]}"
    group = f"it-group-{uuid.uuid4().hex[:8]}"
    sent = {f"1.2.826.0.1.3680043.10.1.{i}": f"payload-{i}".encode() for i in range(10)}

    producer = make_producer(kafka)
    try:
        futures = [producer.send(topic, key=k.encode(), value=v) for k, v in sent.items()]
        producer.flush(timeout=30)
        metadata = [f.get(timeout=30) for f in futures]
    finally:
        producer.close(timeout=10)
    assert all(m.topic == topic and m.offset >= 0 for m in metadata)

    consumer = make_consumer(kafka, topic, group_id=group)
    received: dict[str, bytes] = {}
    try:
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    received[record.key.decode()] = record.value
        consumer.commit()
        partitions = consumer.assignment()
        committed = {tp: consumer.committed(tp) for tp in partitions}
        ends = consumer.end_offsets(list(partitions))
    finally:
        consumer.close()

    delete_topics(kafka, [topic])
    assert received == sent
    # Offsets were committed explicitly (auto-commit is off) up to the end of each partition.
    assert committed and all(committed[tp] == ends[tp] for tp in partitions)
    assert all(isinstance(tp, TopicPartition) for tp in partitions)


def test_consumer_never_auto_commits(kafka):
    topic = f"it-nocommit-{uuid.uuid4().hex[:8]}"
    group = f"it-group-{uuid.uuid4().hex[:8]}"
    producer = make_producer(kafka)
    producer.send(topic, key=b"k", value=b"v").get(timeout=30)
    producer.close(timeout=10)

    def drain() -> list[bytes]:
        consumer = make_consumer(kafka, topic, group_id=group)
        try:
            values: list[bytes] = []
            deadline = time.monotonic() + 30
            while not values and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    values += [r.value for r in records]
            return values
        finally:
            consumer.close(autocommit=False)

    # Without a commit the same record is delivered again to the same group (at-least-once).
    try:
        assert drain() == [b"v"]
        assert drain() == [b"v"]
    finally:
        delete_topics(kafka, [topic])


def test_the_readiness_probe_sees_the_live_broker(kafka):
    host, port = kafka.bootstrap_servers.split(":")
    description = kafka_probe.probe(host, int(port), node_id=NODE_ID)
    assert f"{NODE_ID}@{host}:{port}" in description
    # The controller listener answers Kafka requests but serves no clients: not ready.
    ok, reason = kafka_probe.ready(host, stackctl.PORTS["kafka"]["controller"])
    assert not ok and "Metadata" in reason


def test_the_broker_is_healthy_whatever_its_log_says(kafka, tmp_path, monkeypatch):
    # The old check looked for "Kafka Server started" in the last 200 log lines, which a broker
    # with many partitions pushes out of sight at start-up.
    service = stackctl.SERVICES["kafka"]
    monkeypatch.setattr(service, "log", tmp_path / "kafka.log")
    service.log.write_text("INFO [Broker id=1] Leader it-x-studies-0 starts at leader epoch 2\n" * 5000)
    assert service.healthy(), service.last_check
