"""A message produced and consumed through the real broker with the project's clients."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import TopicPartition

from streaming.kafka_clients import make_consumer, make_producer

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
    assert drain() == [b"v"]
    assert drain() == [b"v"]
