"""Fetching a study named by a StudyEvent: a local folder, or WADO-RS from the configured PACS.

Only the PACS of the settings (``pacs.dicomweb_url``) is fetched from: an event pointing at
any other host is refused at intake (:func:`check_location`) rather than letting a message
on the topic make the worker call arbitrary URLs with the PACS credentials.
"""

from __future__ import annotations

import threading
from pathlib import Path

from pydicom import Dataset

from engine.settings import PacsSettings
from streaming.dicomweb import DicomWeb
from streaming.events import PoisonEventError, StudyEvent


def _normalise(url: str) -> str:
    return url.rstrip("/").lower()


def check_location(event: StudyEvent, pacs: PacsSettings) -> None:
    """Raise :class:`PoisonEventError` when the event points at a PACS this worker does not serve."""
    location = event.location
    if location.dicomweb_root is not None and _normalise(location.dicomweb_root) != _normalise(pacs.dicomweb_url):
        raise PoisonEventError(
            "unknown_pacs",
            f"study_url points at DICOMweb root {location.dicomweb_root!r}, not at the configured "
            f"PACS {pacs.dicomweb_url!r} (VCF_PACS__DICOMWEB_URL)",
        )


class Fetcher:
    """Turns an event into what :func:`engine.dicom.load_study` reads. Safe to share between threads."""

    def __init__(self, pacs: PacsSettings):
        self.pacs = pacs
        self._local = threading.local()

    def _dicomweb(self) -> DicomWeb:
        # One HTTP session per fetch thread: requests.Session is not documented as thread-safe.
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = DicomWeb(self.pacs)
        return client

    def fetch(self, event: StudyEvent) -> Path | list[Dataset]:
        """The study folder, or every instance of the study (TransientError / PacsRequestError on failure)."""
        location = event.location
        if location.folder is not None:
            return location.folder
        return self._dicomweb().retrieve_study(event.study_instance_uid)
