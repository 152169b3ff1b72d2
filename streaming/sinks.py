"""The worker's exit: result and dead-letter records to Kafka, acknowledged before anything is committed.

Results are keyed by StudyInstanceUID; the value is the ScreeningResult JSON line. The
value is deterministic for a study and a pipeline version except ``timings_ms`` (wall time
per stage, part of the result contract): a re-delivered study gives the same key and the
same findings, and differs only in those timings. Who made the record and how long the
study took in the worker travel in record headers, outside the value.

:class:`KafkaSink` sends a Job's records and reports back once, through ``on_done(job, error)``,
when the broker has acknowledged every record (``error`` None) or when one send failed.
Callbacks run on the producer's I/O thread, so ``on_done`` must only hand the news over
(the worker puts it on a queue read by its consumer loop).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.results import ScreeningResult
from streaming.dlq import DeadLetter
from streaming.metrics import Metrics
from streaming.pipeline import Job

log = logging.getLogger(__name__)

WORKER_HEADER = "vcfscreen-worker"
LATENCY_HEADER = "vcfscreen-latency-ms"
STAGES_HEADER = "vcfscreen-stage-ms"
KIND_HEADER = "vcfscreen-kind"


@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes
    kind: str
    """``result`` or ``dead_letter``."""
    code: str | None = None
    """Dead-letter code (``corrupt``, ``invalid_json``...); for a result, the code of its reason
    (``no_spine``, ``levels_not_named``...) when the study was not screened, else None."""
    headers: tuple[tuple[str, bytes], ...] = field(default=())


def result_record(topic: str, result: ScreeningResult, job: Job, worker_id: str) -> OutRecord:
    return OutRecord(
        topic=topic,
        key=result.study_instance_uid.encode(),
        value=result.to_json_line().encode(),
        kind="result",
        code=result.reason_code,
        headers=_headers(job, worker_id, "result"),
    )


def dead_letter_record(topic: str, letter: DeadLetter, job: Job) -> OutRecord:
    return OutRecord(
        topic=topic, key=letter.key, value=letter.to_json(), kind="dead_letter", code=letter.code,
        headers=_headers(job, letter.worker_id, "dead_letter"),
    )


def _headers(job: Job, worker_id: str, kind: str) -> tuple[tuple[str, bytes], ...]:
    latency_ms = (time.monotonic() - job.intake) * 1000.0
    stages = {name: round(ms, 1) for name, ms in job.stage_ms.items()}
    stages["queued"] = round(job.wait_ms, 1)
    return (
        (KIND_HEADER, kind.encode()),
        (WORKER_HEADER, worker_id.encode()),
        (LATENCY_HEADER, f"{latency_ms:.1f}".encode()),
        (STAGES_HEADER, json.dumps(stages, separators=(",", ":")).encode()),
    )


def header_map(headers) -> dict[str, bytes]:
    """A consumed record's headers as a dict (kafka-python gives a list of (name, bytes))."""
    return {name: value for name, value in (headers or [])}


class KafkaSink:
    """Sends each Job's ``outputs`` with the idempotent, acks=all producer."""

    def __init__(self, producer, metrics: Metrics, on_done: Callable[[Job, BaseException | None], None]):
        self.producer = producer
        self.metrics = metrics
        self.on_done = on_done
        self._lock = threading.Lock()
        self.outstanding = 0
        """Jobs whose records are sent and not yet acknowledged (the produce queue depth)."""

    def send(self, job: Job) -> None:
        records = list(job.outputs)
        if job.cancelled or not records:
            self.on_done(job, None)
            return
        job.sent = True
        state = {"left": len(records), "reported": False}
        lock = threading.Lock()
        started = time.perf_counter()
        with self._lock:
            self.outstanding += 1

        def report(error: BaseException | None) -> None:
            with lock:
                if state["reported"]:
                    return
                if error is None:
                    state["left"] -= 1
                    if state["left"]:
                        return
                state["reported"] = True
            with self._lock:
                self.outstanding -= 1
            if error is None:
                seconds = time.perf_counter() - started
                job.stage_ms["produce"] = job.stage_ms.get("produce", 0.0) + seconds * 1000.0
                self.metrics.stage_seconds.labels(stage="produce").observe(seconds)
            self.on_done(job, error)

        for record in records:
            try:
                future = self.producer.send(
                    record.topic, key=record.key, value=record.value, headers=list(record.headers)
                )
            except Exception as exc:  # noqa: BLE001 - buffer full, metadata timeout...: reported, retried by the worker
                report(exc)
                return
            future.add_callback(lambda _metadata: report(None))
            future.add_errback(report)
