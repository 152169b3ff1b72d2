"""In-memory stand-ins for the broker, the clients and the inference backend (no servers).

The fakes keep the behaviour the worker relies on: records per partition in offset order,
pause/resume, commits that a later consumer of the group starts from, rebalances announced
to the listener inside ``poll()``, and producer futures that resolve (or fail) with callbacks.
Small DICOM studies are written with pydicom: 60 axial 32x32 slices, 3 mm apart.
"""

from __future__ import annotations

import threading
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
from kafka import TopicPartition
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from engine.errors import TransientError
from engine.settings import Settings
from streaming.events import event_for_folder

Record = namedtuple("Record", "topic partition offset key value headers")


class FakeBroker:
    def __init__(self, partitions: int = 2):
        self.partitions = partitions
        self.logs: dict[tuple[str, int], list[Record]] = {}
        self.committed: dict[tuple[str, TopicPartition], int] = {}
        self.commit_log: list[dict[TopicPartition, int]] = []
        self.lock = threading.Lock()

    def append(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
               headers=()) -> Record:
        with self.lock:
            if partition is None:
                partition = (hash(key) if key else len(self.logs)) % self.partitions
            log = self.logs.setdefault((topic, partition), [])
            record = Record(topic, partition, len(log), key, value, list(headers))
            log.append(record)
            return record

    def records(self, topic: str) -> list[Record]:
        with self.lock:
            return [r for (t, _p), log in sorted(self.logs.items()) if t == topic for r in log]


class FakeConsumer:
    def __init__(self, broker: FakeBroker, group: str = "g"):
        self.broker = broker
        self.group = group
        self.listener = None
        self.topics_: list[str] = []
        self._assignment: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._position: dict[TopicPartition, int] = {}
        self._pending_assignment: set[TopicPartition] | None = None
        self.polls_while_paused = 0
        self.closed = False

    # subscription and rebalances
    def unsubscribe(self):
        self.unsubscribes = getattr(self, "unsubscribes", 0) + 1
        self.topics_ = []

    def subscribe(self, topics, listener=None):
        self.topics_ = list(topics)
        self.listener = listener
        self._pending_assignment = {TopicPartition(t, p) for t in topics for p in range(self.broker.partitions)}

    def rebalance(self, partitions: set[TopicPartition]) -> None:
        """Announce a new assignment at the next poll (revoke everything, then assign)."""
        self._pending_assignment = set(partitions)

    def _apply_rebalance(self) -> None:
        new, self._pending_assignment = self._pending_assignment, None
        if self._assignment and self.listener:
            self.listener.on_partitions_revoked(set(self._assignment))
        self._assignment, self._paused = set(new), set()
        self._position = {tp: self.broker.committed.get((self.group, tp), 0) for tp in new}
        if self.listener:
            self.listener.on_partitions_assigned(set(new))

    def assignment(self):
        return set(self._assignment)

    def paused(self):
        return set(self._paused)

    def pause(self, *partitions):
        self._paused |= set(partitions)

    def resume(self, *partitions):
        self._paused -= set(partitions)

    def poll(self, timeout_ms=0, max_records=None, update_offsets=True):
        if self._pending_assignment is not None:
            self._apply_rebalance()
        if self._assignment and self._assignment <= self._paused:
            self.polls_while_paused += 1
        out: dict[TopicPartition, list[Record]] = {}
        budget = max_records or 500
        for tp in sorted(self._assignment - self._paused, key=lambda t: t.partition):
            log = self.broker.logs.get((tp.topic, tp.partition), [])
            position = self._position.get(tp, 0)
            taken = log[position: position + budget]
            if taken:
                out[tp] = taken
                self._position[tp] = position + len(taken)
                budget -= len(taken)
            if budget <= 0:
                break
        if not out:
            time.sleep(min(timeout_ms, 10) / 1000.0)
        return out

    def commit(self, offsets=None, timeout_ms=None):
        plain = {tp: meta.offset for tp, meta in offsets.items()}
        for tp, offset in plain.items():
            self.broker.committed[(self.group, tp)] = offset
        self.broker.commit_log.append(plain)

    def end_offsets(self, partitions, timeout_ms=None):
        return {tp: len(self.broker.logs.get((tp.topic, tp.partition), [])) for tp in partitions}

    def position(self, tp, timeout_ms=None):
        return self._position.get(tp, 0)

    def topics(self):
        return {t for t, _p in self.broker.logs}

    def close(self, autocommit=True, timeout_ms=None):
        self.closed = True


class FakeFuture:
    def __init__(self):
        self._callbacks, self._errbacks = [], []
        self.done, self.value, self.error = False, None, None
        self.lock = threading.Lock()

    def resolve(self, value=None, error=None):
        with self.lock:
            self.done, self.value, self.error = True, value, error
            callbacks = list(self._errbacks if error is not None else self._callbacks)
        for callback in callbacks:
            callback(error if error is not None else value)

    def get(self, timeout=None):
        if self.error is not None:
            raise self.error
        return self.value

    def add_callback(self, fn):
        with self.lock:
            if not self.done:
                self._callbacks.append(fn)
                return self
        if self.error is None:
            fn(self.value)
        return self

    def add_errback(self, fn):
        with self.lock:
            if not self.done:
                self._errbacks.append(fn)
                return self
        if self.error is not None:
            fn(self.error)
        return self


class FakeProducer:
    """Appends to the broker; ``hold()`` keeps acks back until ``release()``; ``fail_next`` sends fail."""

    def __init__(self, broker: FakeBroker):
        self.broker = broker
        self.fail_next = 0
        self._held: list[tuple[FakeFuture, tuple]] | None = None
        self.acked: list[Record] = []
        self.lock = threading.Lock()
        self.closed = False

    def hold(self):
        self._held = []

    def release(self):
        held, self._held = self._held or [], None
        for future, args in held:
            self._complete(future, args)

    def send(self, topic, key=None, value=None, headers=None, partition=None):
        future = FakeFuture()
        args = (topic, key, value, headers or [])
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                future.resolve(error=RuntimeError("broker unavailable (fake)"))
                return future
            if self._held is not None:
                self._held.append((future, args))
                return future
        self._complete(future, args)
        return future

    def _complete(self, future, args):
        topic, key, value, headers = args
        record = self.broker.append(topic, key, value, headers=headers)
        with self.lock:
            self.acked.append(record)
        future.resolve(value=record)

    def flush(self, timeout=None):
        pass

    def close(self, timeout=None):
        self.closed = True


class StandInBackend:
    """Finds a sacrum and nothing above it (an `ok` reading of S1 alone, nothing to classify); can
    wait on a gate, be slow, or fail transiently."""

    seg_classes = ("background", "vertebral_body", "intervertebral_disc", "sacrum", "rib_head")
    crop_size = 16

    def __init__(self):
        self.gate: threading.Event | None = None
        self.transient_failures = 0
        self.slow_uids: dict[tuple[int, ...], float] = {}
        self.calls = 0
        self.finds_nothing = False
        """When set, the segmentation is all background: no spine in view."""
        self.lock = threading.Lock()

    @property
    def versions(self):
        return {"vertebra_seg": "stand-in", "vertebra_cls": "stand-in"}

    def segment(self, volume):
        with self.lock:
            self.calls += 1
            if self.transient_failures:
                self.transient_failures -= 1
                raise TransientError("inference server unavailable (stand-in)")
        if self.gate is not None:
            self.gate.wait(timeout=30)
        delay = self.slow_uids.get(volume.shape, 0.0)
        if delay:
            time.sleep(delay)
        logits = np.full((5, *volume.shape), -8.0, dtype=np.float32)
        logits[0] = 8.0
        if self.finds_nothing:
            return logits
        # a block of sacrum at the bottom of the grid (axis 0 runs to superior), mid-plane
        d, h, w = volume.shape
        sacrum = (slice(0, max(2, d // 4)), slice(h // 3, 2 * h // 3), slice(w // 3, 2 * w // 3))
        logits[0][sacrum], logits[3][sacrum] = -8.0, 8.0
        return logits

    def classify(self, crops):
        n = crops.shape[0]
        return np.zeros(n, np.float32), np.tile(np.array([1.0, 0, 0, 0], np.float32), (n, 1))


def write_study(folder: Path, study_uid: str | None = None, n_slices: int = 60, rows: int = 32,
                spacing_mm: float = 3.0) -> str:
    """A small axial CT series (PHANTOM^ identifiers) in ``folder``; returns its StudyInstanceUID."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    frame_uid = generate_uid()
    yy, xx = np.mgrid[:rows, :rows]
    body = ((yy - rows / 2) ** 2 + (xx - rows / 2) ** 2 < (rows / 2.5) ** 2)
    for i in range(n_slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID = "PHANTOM^0001", "PHANTOM-0001"
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SeriesNumber, ds.InstanceNumber = 2, i + 1
        ds.Rows = ds.Columns = rows
        ds.PixelSpacing = [8.0, 8.0]
        ds.SliceThickness = spacing_mm
        ds.ImagePositionPatient = [-rows * 4.0, -rows * 4.0, -i * spacing_mm]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PatientPosition = "HFS"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        pixels = np.where(body, 1024 + 40, 24).astype(np.uint16)
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"{i:04d}.dcm", enforce_file_format=True)
    return study_uid


# Settings and jobs for the stage tests. They live here, not in conftest.py: a test module
# importing `conftest` gets whichever conftest was imported first in a mixed run.
def make_settings(**worker) -> Settings:
    values = {"retry_backoff_s": 0.001, "retry_backoff_max_s": 0.01, "revoke_grace_s": 5.0,
              "drain_grace_s": 10.0, "lag_refresh_s": 0.05, "worker_id": "unit-worker", **worker}
    return Settings(worker=values)


def make_job(folder: Path | None = None, uid: str = "1.2.3", *, offset: int = 7, value: bytes | None = None):
    """A Job as the worker makes it from a record at ``ct.studies[0]@offset``."""
    from kafka import TopicPartition

    from engine.screen import Timer
    from streaming.pipeline import Job, RecordRef

    event = event_for_folder(folder, uid) if folder is not None else None
    record = RecordRef("ct.studies", 0, offset, uid.encode(), value if value is not None else
                       (event.to_bytes() if event else b"{}"))
    return Job(record, event, timer=Timer(), tp=TopicPartition("ct.studies", 0))
