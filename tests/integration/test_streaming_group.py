"""Two workers in one consumer group split the partitions and produce each key once."""

from __future__ import annotations

import time

import pytest
import streaming_it
from streaming_it import (
    committed_offsets,
    keys_of,
    publish,
    read_records,
    read_to_end,
    start_worker,
)

from streaming.events import event_for_folder
from streaming.sinks import WORKER_HEADER, header_map

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# Fixtures shared by the streaming integration tests.
topics = streaming_it.topics
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
        topics, phantom_studies, tiny_models_dir, tmp_path):
    settings = topics("group")
    # Create the topic (4 partitions, the broker default) before the workers join. This first
    # study is taken by whichever worker joins first and is usually in flight when the second
    # joins: the rebalance must neither lose it nor let both workers produce it.
    events = [event_for_folder(folder, uid) for folder, uid in phantom_studies]
    assert publish(settings, events[:1]) == 1
    workers = [start_worker(settings, tiny_models_dir, tmp_path / f"w{i}.log", VCF_WORKER__WORKER_ID=f"w{i}")
               for i in range(2)]
    try:
        assignments = settled_assignments(workers, partitions=4)
        assert publish(settings, events[1:]) == len(events) - 1
        expected = {uid for _f, uid in phantom_studies}
        read_records(settings, settings.results_topic, lambda rs: set(keys_of(rs)) >= expected, 300, workers)
        studies = read_records(settings, settings.studies_topic, lambda rs: len(rs) >= len(events), 30)
    finally:
        exit_codes = [w.stop() for w in workers]
    assert exit_codes == [0, 0]

    # Read the results again once both workers have stopped: a late duplicate counts too.
    records = read_to_end(settings, settings.results_topic)
    keys = keys_of(records)
    logs = "\n".join(f"--- {w.log_path.name}\n{w.log_text()[-3000:]}" for w in workers)
    assert set(keys) == expected and all(n == 1 for n in keys.values()), f"{keys}\n{logs}"
    # Each study published after the group settled was made by the worker that owns its partition
    # (the first one was published before: either worker may have made it, once).
    owner = {partition: f"w{i}" for i, assigned in enumerate(assignments) for _topic, partition in assigned}
    made_by = {r.key.decode(): header_map(r.headers)[WORKER_HEADER].decode() for r in records}
    early = phantom_studies[0][1]
    for study in studies:
        if study.key.decode() != early:
            assert made_by[study.key.decode()] == owner[study.partition], logs
    assert set(made_by.values()) == {"w0", "w1"}, "both workers took a share"


@pytest.mark.parametrize(("grace_s", "in_flight"), [("30", "4"), ("0", "1")],
                         ids=["revoked-work-finishes", "revoked-work-is-abandoned"])
def test_a_worker_joining_mid_stream_takes_over_without_a_duplicate(
        grace_s, in_flight, topics, phantom_studies, tiny_models_dir, tmp_path):
    # The first worker holds every partition with studies in flight when the second joins: on
    # revocation it finishes them within the grace (30 s) and commits them, or (grace 0) abandons
    # the one not yet handed to the producer, which the partition's next owner (possibly itself)
    # then processes. Either way each study delivered once gives one result, and every offset
    # ends up committed. (Abandoning is exact only without out-of-order completion inside a
    # partition, hence one study in flight there: a finished study after an abandoned one is
    # behind the commit point and is produced again by whoever resumes the partition.)
    settings = topics("join")
    events = [event_for_folder(folder, uid) for folder, uid in phantom_studies]
    expected = {uid for _f, uid in phantom_studies}
    assert publish(settings, events) == len(events)
    env = {"VCF_WORKER__REVOKE_GRACE_S": grace_s, "VCF_WORKER__MAX_IN_FLIGHT": in_flight}
    first = start_worker(settings, tiny_models_dir, tmp_path / "w0.log", VCF_WORKER__WORKER_ID="w0", **env)
    workers = [first]
    try:
        assert len(first.wait_assigned(180)) == 4
        read_records(settings, settings.results_topic, lambda rs: len(rs) >= 1, 300, workers)
        workers.append(start_worker(settings, tiny_models_dir, tmp_path / "w1.log", VCF_WORKER__WORKER_ID="w1", **env))
        settled_assignments(workers, partitions=4)
        read_records(settings, settings.results_topic, lambda rs: set(keys_of(rs)) >= expected, 300, workers)
    finally:
        exit_codes = [w.stop() for w in workers]
    assert exit_codes == [0, 0]

    records = read_to_end(settings, settings.results_topic)
    keys = keys_of(records)
    logs = "\n".join(f"--- {w.log_path.name}\n{w.log_text()[-3000:]}" for w in workers)
    assert set(keys) == expected and all(n == 1 for n in keys.values()), f"{keys}\n{logs}"
    assert "revoked partitions" in first.log_text(), "the second worker's join revoked the first one's partitions"
    committed, ends = committed_offsets(settings)
    committed = {partition: offset or 0 for partition, offset in committed.items()}  # None: empty, never committed
    assert committed == ends, f"committed {committed}, end offsets {ends}\n{logs}"
