"""kill -9 of the worker mid-stream, then a restart: no study is lost (at-least-once)."""

from __future__ import annotations

import pytest
import streaming_it
from streaming_it import (
    committed_offsets,
    keys_of,
    publish,
    read_records,
    start_worker,
    statuses,
)

from streaming.events import event_for_folder

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# Fixtures shared by the streaming integration tests.
topics = streaming_it.topics
phantom_studies = streaming_it.phantom_studies
tiny_models_dir = streaming_it.tiny_models_dir


def test_kill_9_mid_stream_and_restart_lose_no_study(topics, phantom_studies, tiny_models_dir, tmp_path):
    settings = topics("crash")
    expected = {uid for _f, uid in phantom_studies}
    assert publish(settings, [event_for_folder(folder, uid) for folder, uid in phantom_studies]) == len(expected)

    # A short session lets the broker notice the killed member soon (the default is 45 s).
    session = {"VCF_KAFKA__SESSION_TIMEOUT_MS": "8000"}
    first = start_worker(settings, tiny_models_dir, tmp_path / "first.log", VCF_WORKER__MAX_IN_FLIGHT="2", **session)
    try:
        first.wait_assigned(120)
        before = read_records(settings, settings.results_topic, lambda rs: len(rs) >= 2, 300, [first])
    finally:
        first.kill()  # SIGKILL: no drain, no final commit
    assert first.process.returncode == -9
    assert len(keys_of(before)) < len(expected), "the kill must land mid-stream"

    second = start_worker(settings, tiny_models_dir, tmp_path / "second.log", **session)
    try:
        second.wait_assigned(120)
        after = read_records(settings, settings.results_topic,
                             lambda rs: set(keys_of(rs)) >= expected, 300, [first, second])
    finally:
        exit_code = second.stop()
    assert exit_code == 0, second.log_text()[-3000:]

    keys = keys_of(after)
    assert set(keys) == expected, "every study has a result after the restart"
    assert set(statuses(after).values()) == {"ok"}
    # Re-delivery may repeat a study finished but not committed before the kill, never more.
    assert sum(keys.values()) - len(expected) <= 2
    committed, ends = committed_offsets(settings)
    assert all(committed[p] == end for p, end in ends.items() if end), (committed, ends)
