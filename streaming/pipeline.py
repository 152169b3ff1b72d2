"""The worker's stage machinery: a Job travels through stages joined by bounded queues.

A :class:`Stage` is a small unit with a declared input and output: the Job attributes it
``requires`` and those it ``provides``. :class:`Pipeline` wires stages in order with one
bounded queue in front of each and refuses, when it is built, a stage whose requirement no
earlier stage provides (the wrong connection fails at start-up, not when a study arrives).

Each stage runs ``threads`` threads; a thread takes a Job, runs the stage's ``process``,
records the time in the stage histogram and puts the Job on the next queue (blocking when
that queue is full: the backpressure that keeps memory bounded). A Job that already failed
(``job.error``) or was ``cancelled`` skips the work of later stages but still travels to the
end, so that every Job leaves the pipeline through one exit: the ``finish`` callback.

Transient failures are retried inside the stage by :func:`retry_transient` (bounded,
exponential back-off, counted in ``vcfscreen_retries_total``).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from engine.errors import StudyError, TransientError
from engine.logs import study_ref
from streaming.events import StudyEvent
from streaming.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
_ids = itertools.count(1)
_STOP = object()


@dataclass(frozen=True)
class RecordRef:
    """Where a Job's event came from (for commits and dead-letter records)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(eq=False)
class Job:
    """One study in flight: its event, what each stage made of it, and how long each took."""

    record: RecordRef
    event: StudyEvent | None
    id: int = field(default_factory=lambda: next(_ids))
    intake: float = field(default_factory=time.monotonic)
    source: Any = None
    """Fetch output: a study folder (Path) or the instances fetched over DICOMweb."""
    loaded: Any = None
    """Load output: :class:`engine.dicom.LoadedStudy`."""
    sr_source: Any = None
    """Load output when write-back is on: :class:`engine.report.sr.SourceSeries`."""
    model_input: Any = None
    """Preprocess output: :class:`engine.preprocess.ModelInput`."""
    output: Any = None
    """Infer output: :class:`engine.screen.StudyOutput` (result, volume, levels...)."""
    outputs: list = field(default_factory=list)
    """Postprocess output: the records to produce (:class:`streaming.sinks.OutRecord`)."""
    outcome: str | None = None
    """ok, not_eligible, error or dead_letter, set by postprocess."""
    error: BaseException | None = None
    failed_stage: str | None = None
    cancelled: bool = False
    stage_ms: dict[str, float] = field(default_factory=dict)
    wait_ms: float = 0.0
    """Time spent queued between stages."""
    queued_at: float = 0.0
    tp: Any = None
    """The record's kafka TopicPartition (the key of its offset bookkeeping)."""
    sending: bool = False
    """The worker handed the Job to the sink: its records will be produced, it can no longer be
    cancelled (set under the worker's lock, see ``Worker._send`` and ``Worker._cancel``)."""
    sent: bool = False
    """The sink handed the outputs to the producer."""
    send_attempts: int = 0
    timer: Any = None
    """:class:`engine.screen.Timer` collecting the result's ``timings_ms``."""

    @property
    def uid(self) -> str | None:
        return self.event.study_instance_uid if self.event else None

    @property
    def ref(self) -> str:
        return study_ref(self.uid)

    def release_pixels(self) -> None:
        """Drop the large intermediate arrays once they are no longer needed."""
        self.source = None
        self.loaded = None
        self.model_input = None


class Stage:
    """A step of the pipeline. Subclasses set ``name``, ``requires``, ``provides`` and ``process``."""

    name: ClassVar[str] = "stage"
    requires: ClassVar[tuple[str, ...]] = ()
    provides: ClassVar[tuple[str, ...]] = ()
    threads: int = 1
    runs_on_failed: ClassVar[bool] = False
    """True for stages that must see failed Jobs too (postprocess builds their error records)."""

    def process(self, job: Job) -> None:
        raise NotImplementedError

    def split(self, job: Job, seconds: float) -> dict[str, float]:
        """How the stage's wall time is reported, by metric stage name (default: all of it, own name)."""
        return {self.name: seconds}

    def close(self) -> None:
        """Release what the stage holds (sessions, connections); called once at shutdown."""


def retry_transient(
    action: Callable[[], T],
    *,
    stage: str,
    job: Job,
    metrics: Metrics,
    max_retries: int,
    backoff_s: float,
    backoff_max_s: float,
    cancelled: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``action()``, retried on :class:`TransientError` up to ``max_retries`` times with back-off.

    The last TransientError is raised when the bound is reached (the study is then
    dead-lettered as ``transient``); a permanent StudyError is raised at once.
    """
    attempt = 0
    while True:
        try:
            return action()
        except TransientError as exc:
            if attempt >= max_retries or cancelled():
                raise TransientError(f"{exc.message} (gave up after {attempt} retries in {stage})") from None
            delay = min(backoff_s * 2**attempt, backoff_max_s)
            attempt += 1
            metrics.retries.labels(stage=stage).inc()
            log.warning("%s: %s failed for now (%s); retry %d of %d in %.1f s",
                        job.ref, stage, exc.message, attempt, max_retries, delay)
            sleep(delay)


class PipelineError(RuntimeError):
    """The stages cannot be connected as given (a programming or configuration error)."""


class Pipeline:
    """Stages in order, a bounded queue in front of each, threads started by :meth:`start`."""

    def __init__(self, stages: Sequence[Stage], metrics: Metrics, queue_size: int,
                 finish: Callable[[Job], None], intake_provides: Sequence[str] = ("record", "event")):
        available = set(intake_provides)
        for stage in stages:
            missing = [name for name in stage.requires if name not in available]
            if missing:
                raise PipelineError(
                    f"stage {stage.name!r} requires {', '.join(missing)}, which no earlier stage "
                    f"provides (available: {', '.join(sorted(available))})"
                )
            available |= set(stage.provides)
        if len({s.name for s in stages}) != len(stages):
            raise PipelineError(f"stage names must be unique: {[s.name for s in stages]}")
        self.stages = list(stages)
        self.metrics = metrics
        self.finish = finish
        self.queues: list[queue.Queue] = [queue.Queue(maxsize=queue_size) for _ in stages]
        self._threads: list[threading.Thread] = []

    def start(self) -> Pipeline:
        for index, stage in enumerate(self.stages):
            for n in range(stage.threads):
                thread = threading.Thread(target=self._run, args=(index,), name=f"stage-{stage.name}-{n}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def submit(self, job: Job, timeout: float | None = None) -> None:
        """Put a Job in front of the first stage (blocks while that queue is full)."""
        self._put(0, job, timeout)

    def _put(self, index: int, job: Job, timeout: float | None = None) -> None:
        job.queued_at = time.monotonic()
        self.queues[index].put(job, timeout=timeout)

    def depths(self) -> dict[str, int]:
        return {stage.name: q.qsize() for stage, q in zip(self.stages, self.queues, strict=True)}

    def _run(self, index: int) -> None:
        stage = self.stages[index]
        inbox = self.queues[index]
        while True:
            job = inbox.get()
            if job is _STOP:
                return
            job.wait_ms += (time.monotonic() - job.queued_at) * 1000.0
            if not job.cancelled and (job.error is None or stage.runs_on_failed):
                start = time.perf_counter()
                try:
                    stage.process(job)
                except StudyError as exc:
                    job.error, job.failed_stage = exc, stage.name
                except Exception as exc:  # a bug or an unforeseen input: this study fails, the worker goes on
                    log.exception("%s: unexpected failure in stage %s", job.ref, stage.name)
                    job.error, job.failed_stage = exc, stage.name
                for name, seconds in stage.split(job, time.perf_counter() - start).items():
                    job.stage_ms[name] = job.stage_ms.get(name, 0.0) + seconds * 1000.0
                    self.metrics.stage_seconds.labels(stage=name).observe(seconds)
            if index + 1 < len(self.stages):
                self._put(index + 1, job)
            else:
                try:
                    self.finish(job)
                except Exception:
                    log.exception("%s: the pipeline exit failed", job.ref)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads after the Jobs already queued (call when nothing is in flight)."""
        for index, stage in enumerate(self.stages):
            for _ in range(stage.threads):
                try:
                    self.queues[index].put(_STOP, timeout=timeout)
                except queue.Full:
                    log.warning("stage %s did not take its stop signal within %.0f s", stage.name, timeout)
            for thread in [t for t in self._threads if t.name.startswith(f"stage-{stage.name}-")]:
                thread.join(timeout=timeout)
        for stage in self.stages:
            try:
                stage.close()
            except Exception:
                log.exception("closing stage %s failed", stage.name)
