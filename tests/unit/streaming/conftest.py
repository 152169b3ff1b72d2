"""Fixtures of the streaming unit tests: small studies on disk, settings, an in-memory worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streaming_fakes import (
    FakeBroker,
    FakeConsumer,
    FakeProducer,
    StandInBackend,
    make_settings,
    write_study,
)

from engine.screen import Screener
from engine.settings import Settings
from streaming.events import event_for_folder


@pytest.fixture(scope="session")
def study_folders(tmp_path_factory) -> list[tuple[Path, str]]:
    """Four small valid studies: (folder, StudyInstanceUID)."""
    root = tmp_path_factory.mktemp("studies")
    return [(root / f"study{i}", write_study(root / f"study{i}")) for i in range(4)]


@pytest.fixture(scope="session")
def corrupt_folder(tmp_path_factory) -> tuple[Path, str]:
    """A study whose 11th slice lost the end of its pixel data (undecodable)."""
    folder = tmp_path_factory.mktemp("corrupt") / "s"
    uid = write_study(folder)
    damaged = folder / "0010.dcm"
    damaged.write_bytes(damaged.read_bytes()[:-500])
    return folder, uid


@pytest.fixture(scope="session")
def short_folder(tmp_path_factory) -> tuple[Path, str]:
    """A valid CT series too short to screen (not eligible)."""
    folder = tmp_path_factory.mktemp("short") / "s"
    return folder, write_study(folder, n_slices=12)


class Harness:
    """A Worker over the fake broker, stepped by the test."""

    def __init__(self, settings: Settings, backend: StandInBackend | None = None, fetcher=None, partitions: int = 2):
        from streaming.worker import Worker

        self.settings = settings
        self.broker = FakeBroker(partitions)
        self.consumer = FakeConsumer(self.broker)
        self.producer = FakeProducer(self.broker)
        self.backend = backend or StandInBackend()
        self.screener = Screener(settings, backend=self.backend)
        self.worker = Worker(settings, self.screener, self.consumer, self.producer, fetcher=fetcher)
        self.worker.poll_timeout_ms = 20

    def submit(self, folder: Path, uid: str, partition: int = 0) -> None:
        event = event_for_folder(folder, uid)
        self.broker.append(self.settings.kafka.studies_topic, uid.encode(), event.to_bytes(), partition=partition)

    def submit_raw(self, key: bytes | None, value: bytes | None, partition: int = 0) -> None:
        self.broker.append(self.settings.kafka.studies_topic, key, value, partition=partition)

    def results(self) -> list:
        return self.broker.records(self.settings.kafka.results_topic)

    def dead_letters(self) -> list:
        return self.broker.records(self.settings.kafka.dlq_topic)

    def run_until(self, predicate: Callable[[], bool], timeout_s: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            self.worker.step()

    def committed(self, partition: int) -> int | None:
        from kafka import TopicPartition

        tp = TopicPartition(self.settings.kafka.studies_topic, partition)
        return self.broker.committed.get((self.consumer.group, tp))

    def stop(self) -> None:
        self.worker.request_stop()
        self.worker.drain()
        self.worker.close()


@pytest.fixture
def harness_factory():
    made: list[Harness] = []

    def make(settings: Settings | None = None, **kwargs) -> Harness:
        harness = Harness(settings or make_settings(), **kwargs)
        harness.worker.start()
        made.append(harness)
        return harness

    yield make
    for harness in made:
        if not harness.consumer.closed:
            for job in harness.worker.jobs.values():
                job.cancelled = True
            harness.worker.close()


