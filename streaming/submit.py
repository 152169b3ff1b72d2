"""Publishing StudyEvents: for folders of studies, or for every study of a DICOMweb archive.

The archive replay pages through QIDO-RS (``DicomWeb.search_studies``) and publishes one
event per study; events are paced by a token bucket (``pacs.max_requests_per_s`` or
``--rate``) since each becomes a WADO-RS retrieval on the same archive. For the demo,
:func:`store_study_folder` uploads a phantom study to the PACS over STOW-RS first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from engine.errors import VcfScreenError
from engine.logs import study_ref
from streaming.dicomweb import DicomWeb
from streaming.events import StudyEvent, event_for_dicomweb, event_for_folder

log = logging.getLogger(__name__)

NOT_DICOM = frozenset({"truth.json", "labels.npz"})
STOW_BATCH = 64
"""Instances per STOW-RS request: bounds the request size (a 512x512 slice is ~0.5 MB)."""
STUDY_UID_TAG = "0020000D"
ACCESSION_TAG = "00080050"


class SubmitError(VcfScreenError):
    """A study folder or archive cannot be turned into events."""

    code = "submit"


class RateLimiter:
    """At most ``rate`` acquisitions per second on average, bursts of up to ``burst``."""

    def __init__(self, rate: float | None, burst: int = 1, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate is not None and rate <= 0:
            raise ValueError(f"rate {rate} must be positive (events per second)")
        self.rate, self.burst = rate, max(1, burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        if self.rate is None:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            self._tokens -= 1
        if wait:
            self._sleep(wait)
        return wait


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in NOT_DICOM and not p.name.startswith("."))


def study_uid_of_folder(folder: Path) -> str:
    """The StudyInstanceUID of the first readable DICOM file of a study folder."""
    for path in dicom_files(folder):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        uid = ds.get("StudyInstanceUID")
        if uid:
            return str(uid)
    raise SubmitError(f"no DICOM file with a StudyInstanceUID in the study folder {folder.name!r}")


def folder_events(folders: Iterable[Path], priority: int = 0) -> Iterator[StudyEvent]:
    """One ``file://`` event per study folder (a folder without DICOM raises SubmitError)."""
    for folder in folders:
        yield event_for_folder(folder, study_uid_of_folder(folder), priority=priority)


def archive_events(dicomweb: DicomWeb, dicomweb_url: str, page_size: int = 100, limit: int | None = None,
                   pace: RateLimiter | None = None, priority: int = 0, **filters) -> Iterator[StudyEvent]:
    """One event per study of the archive, paging QIDO-RS ``page_size`` studies at a time."""
    offset, produced = 0, 0
    while limit is None or produced < limit:
        if pace is not None:
            pace.acquire()
        page = dicomweb.search_studies(offset=offset, limit=page_size, **filters)
        for study in page:
            uid = (study.get(STUDY_UID_TAG, {}).get("Value") or [None])[0]
            if not uid:
                log.warning("QIDO-RS answer without StudyInstanceUID skipped (offset %d)", offset)
                continue
            accession = (study.get(ACCESSION_TAG, {}).get("Value") or [None])[0]
            yield event_for_dicomweb(dicomweb_url, uid, accession_number=accession or None, priority=priority)
            produced += 1
            if limit is not None and produced >= limit:
                return
        if len(page) < page_size:
            return
        offset += len(page)


def store_study_folder(dicomweb: DicomWeb, folder: Path) -> str:
    """STOW-RS every DICOM instance of a study folder; returns the StudyInstanceUID."""
    files = dicom_files(folder)
    if not files:
        raise SubmitError(f"the study folder {folder.name!r} holds no file to store")
    uids: set[str] = set()
    for first in range(0, len(files), STOW_BATCH):
        datasets = [pydicom.dcmread(path) for path in files[first:first + STOW_BATCH]]
        uids |= {str(ds.StudyInstanceUID) for ds in datasets}
        dicomweb.store(datasets)
    if len(uids) != 1:
        raise SubmitError(f"the study folder {folder.name!r} mixes {len(uids)} studies")
    log.info("stored %s (%d instances) over STOW-RS", study_ref(next(iter(uids))), len(files))
    return uids.pop()


class Publisher:
    """Publishes events keyed by StudyInstanceUID and waits for the broker's acknowledgements."""

    def __init__(self, producer, topic: str, pace: RateLimiter | None = None):
        self.producer = producer
        self.topic = topic
        self.pace = pace or RateLimiter(None)
        self._futures: list = []

    def publish(self, event: StudyEvent) -> None:
        self.pace.acquire()
        self._futures.append(self.producer.send(self.topic, key=event.study_instance_uid.encode(), value=event.to_bytes()))

    def publish_raw(self, key: bytes | None, value: bytes) -> None:
        """A record as given (the demo's deliberately malformed event)."""
        self._futures.append(self.producer.send(self.topic, key=key, value=value))

    def wait(self, timeout_s: float = 60.0) -> int:
        """Block until every published record is acknowledged; returns how many were."""
        self.producer.flush(timeout=timeout_s)
        for future in self._futures:
            future.get(timeout=timeout_s)
        count, self._futures = len(self._futures), []
        return count


def _progress(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console)


def run_submit(settings, paths: list[Path], from_pacs: bool, store_to_pacs: bool, rate: float | None,
               limit: int | None, priority: int, topic: str | None) -> int:
    """``vcfscreen submit``: returns the number of events acknowledged by the broker."""
    from rich.console import Console

    from engine.cli.screen_cmd import UsageError, discover_studies
    from streaming.kafka_clients import make_producer

    if from_pacs == bool(paths):
        raise UsageError("give study folders, or --from-pacs (not both)")
    if from_pacs and store_to_pacs:
        raise UsageError("--store-to-pacs uploads study folders; it cannot be used with --from-pacs")
    folders = discover_studies(paths) if paths else []
    if limit is not None:
        folders = folders[:limit]
    pacs_events = from_pacs or store_to_pacs
    pace = RateLimiter(rate if rate is not None else (settings.pacs.max_requests_per_s if pacs_events else None))
    topic = topic or settings.kafka.studies_topic
    console = Console(stderr=True)
    dicomweb = DicomWeb(settings.pacs) if pacs_events else None
    producer = make_producer(settings.kafka)
    publisher = Publisher(producer, topic, pace)
    shown = f"{pace.rate:g}/s max" if pace.rate else ""
    try:
        with _progress(console) as progress:
            if from_pacs:
                task = progress.add_task("publishing (QIDO-RS replay)", total=limit, rate=shown)
                # The pace is shared: QIDO pages and published events both count as PACS load.
                for event in archive_events(dicomweb, settings.pacs.dicomweb_url, limit=limit, pace=pace,
                                            priority=priority):
                    publisher.publish(event)
                    progress.advance(task)
            else:
                task = progress.add_task("storing + publishing" if store_to_pacs else "publishing",
                                         total=len(folders), rate=shown)
                for folder in folders:
                    if store_to_pacs:
                        uid = store_study_folder(dicomweb, folder)
                        event = event_for_dicomweb(settings.pacs.dicomweb_url, uid, priority=priority)
                    else:
                        event = next(folder_events([folder], priority))
                    publisher.publish(event)
                    progress.advance(task)
        return publisher.wait()
    finally:
        producer.close(timeout=10)
