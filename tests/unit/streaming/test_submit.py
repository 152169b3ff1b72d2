"""vcfscreen submit: events for folders and for an archive replay, paced, keyed by StudyInstanceUID."""

from __future__ import annotations

import pytest
from streaming_fakes import FakeBroker, FakeProducer, write_study

from streaming.events import parse_event
from streaming.submit import (
    Publisher,
    RateLimiter,
    SubmitError,
    archive_events,
    folder_events,
    store_study_folder,
    study_uid_of_folder,
)

ROOT = "http://127.0.0.1:8042/dicom-web"


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_the_rate_limiter_spaces_events():
    clock = FakeClock()
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)
    for _ in range(9):
        limiter.acquire()
    # the first is free (burst 1), the next eight wait 1/4 s each: 2 s for 9 events at 4/s
    assert clock.now == pytest.approx(2.0)
    assert RateLimiter(None).acquire() == 0.0
    with pytest.raises(ValueError):
        RateLimiter(0)


class FakeArchive:
    def __init__(self, n):
        self.uids = [f"1.2.826.0.1.3680043.8.498.{i + 1}" for i in range(n)]
        self.calls = []

    def search_studies(self, offset=0, limit=100, **filters):
        self.calls.append((offset, limit))
        return [{"0020000D": {"vr": "UI", "Value": [uid]}, "00080050": {"vr": "SH", "Value": [f"ACC{i}"]}}
                for i, uid in enumerate(self.uids[offset:offset + limit], start=offset)]


def test_the_archive_replay_pages_through_qido():
    archive = FakeArchive(7)
    events = list(archive_events(archive, ROOT, page_size=3))
    assert [e.study_instance_uid for e in events] == archive.uids
    assert archive.calls == [(0, 3), (3, 3), (6, 3)]
    assert events[4].study_url == f"{ROOT}/studies/{archive.uids[4]}" and events[4].accession_number == "ACC4"
    limited = FakeArchive(7)
    assert len(list(archive_events(limited, ROOT, page_size=3, limit=4))) == 4 and len(limited.calls) == 2


def test_folder_events_read_the_study_uid(tmp_path):
    uid = write_study(tmp_path / "s", n_slices=3)
    (tmp_path / "s" / "truth.json").write_text("{}")
    assert study_uid_of_folder(tmp_path / "s") == uid
    (event,) = folder_events([tmp_path / "s"], priority=2)
    assert event.study_instance_uid == uid and event.priority == 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(SubmitError, match="no DICOM file"):
        study_uid_of_folder(tmp_path / "empty")


def test_published_events_are_keyed_by_uid_and_acknowledged(tmp_path):
    broker = FakeBroker(partitions=1)
    publisher = Publisher(FakeProducer(broker), "ct.studies")
    uid = write_study(tmp_path / "s", n_slices=3)
    publisher.publish(next(folder_events([tmp_path / "s"])))
    assert publisher.wait() == 1
    (record,) = broker.records("ct.studies")
    assert record.key == uid.encode() and parse_event(record.key, record.value).study_instance_uid == uid


class FakeStore:
    def __init__(self):
        self.batches = []

    def store(self, datasets):
        self.batches.append(len(datasets))


def test_store_to_pacs_sends_bounded_batches(tmp_path):
    uid = write_study(tmp_path / "s", n_slices=70)
    store = FakeStore()
    assert store_study_folder(store, tmp_path / "s") == uid
    assert store.batches == [64, 6]
