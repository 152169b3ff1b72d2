"""Fetch stage: folders as they are, DICOMweb only from the configured PACS, transient failures retried."""

from __future__ import annotations

from typing import ClassVar

import pytest
from streaming_fakes import make_job, make_settings

from engine.errors import TransientError
from engine.settings import PacsSettings
from streaming import fetch as fetch_module
from streaming.events import PoisonEventError, event_for_dicomweb
from streaming.fetch import Fetcher, check_location
from streaming.metrics import Metrics
from streaming.stages import FetchStage

UID = "1.2.826.0.1.3680043.8.498.777"


class FakeDicomWeb:
    failures = 0
    retrieved: ClassVar[list[str]] = []

    def __init__(self, settings):
        self.settings = settings

    def retrieve_study(self, uid):
        if FakeDicomWeb.failures:
            FakeDicomWeb.failures -= 1
            raise TransientError("retrieve: HTTP 503")
        FakeDicomWeb.retrieved.append(uid)
        return ["instance-1", "instance-2"]


@pytest.fixture
def fake_dicomweb(monkeypatch):
    FakeDicomWeb.failures, FakeDicomWeb.retrieved = 0, []
    monkeypatch.setattr(fetch_module, "DicomWeb", FakeDicomWeb)
    return FakeDicomWeb


def test_a_folder_event_gives_the_folder(study_folders):
    folder, uid = study_folders[0]
    job = make_job(folder, uid)
    FetchStage(make_settings(), Metrics()).process(job)
    assert job.source == folder.resolve()


def test_a_dicomweb_event_retrieves_the_study_with_retries(fake_dicomweb):
    settings = make_settings(max_retries=2)
    job = make_job(None, UID)
    job.event = event_for_dicomweb(settings.pacs.dicomweb_url, UID)
    fake_dicomweb.failures = 2
    metrics = Metrics()
    stage = FetchStage(settings, metrics)
    stage.process(job)
    assert job.source == ["instance-1", "instance-2"] and fake_dicomweb.retrieved == [UID]
    assert metrics.retries.labels(stage="fetch")._value.get() == 2
    fake_dicomweb.failures = 3
    with pytest.raises(TransientError, match="gave up after 2 retries"):
        stage.process(job)


def test_one_client_per_fetch_thread(fake_dicomweb):
    import threading

    fetcher = Fetcher(PacsSettings())
    event = event_for_dicomweb(PacsSettings().dicomweb_url, UID)
    fetcher.fetch(event)
    first = fetcher._local.client
    fetcher.fetch(event)
    assert fetcher._local.client is first
    other = []
    thread = threading.Thread(target=lambda: (fetcher.fetch(event), other.append(fetcher._local.client)))
    thread.start()
    thread.join()
    assert other[0] is not first


def test_events_for_another_pacs_are_refused():
    pacs = PacsSettings(dicomweb_url="http://pacs.hospital:8042/dicom-web/")
    check_location(event_for_dicomweb("http://PACS.hospital:8042/dicom-web", UID), pacs)
    with pytest.raises(PoisonEventError) as caught:
        check_location(event_for_dicomweb("http://evil.example/dicom-web", UID), pacs)
    assert caught.value.code == "unknown_pacs"
