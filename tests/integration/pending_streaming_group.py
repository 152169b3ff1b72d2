"""Two workers in one consumer group split the partitions and produce each key once."""

from __future__ import annotations

import time

import pytest
import streaming_it
from streaming_it import keys_of, publish, read_records, start_worker, unique_kafka

from streaming.events import event_for_folder
from streaming.sinks import WORKER_HEADER, header_map

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# Session fixtures shared by the streaming integration tests.
phantom_studies = streaming_it.phantom_studies
tiny_models_dir = streaming_it.tiny_models_dir


def settled_assignments(workers, partitions: int, timeout_s: float = 120.0):
    """The workers' latest assignments once they cover every partition exactly once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assignments = [w.assignment() or set() for w in workers]
        union = set().union(*assignments)
        if len(union) == partitions and sum(len(a) for a in assignments) == partitions and all(assignments):
            return assignments
        time.sleep(0.3)
    logs = "\n".join(w.log_text()[-2000:] for w in workers)
    pytest.fail(f"the group did not settle on {partitions} partitions:\n{logs}")


def test_two_workers_split_the_partitions_and_each_key_is_produced_once(
        kafka, phantom_studies, tiny_models_dir, tmp_path):
    settings = unique_kafka(kafka, "group")
    # Create the topic (4 partitions, the broker default) before the workers join.
    events = [event_for_folder(folder, uid) for folder, uid in phantom_studies]
    assert publish(settings, events[:1]) == 1
    workers = [start_worker(settings, tiny_models_dir, tmp_path / f"w{i}.log", VCF_WORKER__WORKER_ID=f"w{i}")
               for i in range(2)]
    try:
        assignments = settled_assignments(workers, partitions=4)
        assert publish(settings, events[1:]) == len(events) - 1
        expected = {uid for _f, uid in phantom_studies}
        records = read_records(settings, settings.results_topic, lambda rs: set(keys_of(rs)) >= expected, 300, workers)
        studies = read_records(settings, settings.studies_topic, lambda rs: len(rs) >= len(events), 30)
    finally:
        exit_codes = [w.stop() for w in workers]
    assert exit_codes == [0, 0]

    keys = keys_of(records)
    assert set(keys) == expected and all(n == 1 for n in keys.values()), keys
    # Each result was made by the worker that owns its event's partition.
    owner = {partition: f"w{i}" for i, assigned in enumerate(assignments) for _topic, partition in assigned}
    made_by = {r.key.decode(): header_map(r.headers)[WORKER_HEADER].decode() for r in records}
    for study in studies:
        assert made_by[study.key.decode()] == owner[study.partition]
    assert set(made_by.values()) == {"w0", "w1"}, "both workers took a share"
