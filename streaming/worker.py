"""The streaming worker: StudyEvents in, ScreeningResults out, offsets committed only when safe.

One consumer loop (this thread: kafka-python's consumer is not thread-safe) takes records,
turns each into a Job and hands it to the stage pipeline; the Kafka sink reports back when
the broker has acknowledged a Job's records, and the loop then marks the record finished
and commits, per partition, the end of the contiguous run of finished records. Delivery is
at-least-once: a crash re-delivers everything after the last commit, never less.

- Backpressure: at ``worker.max_in_flight`` Jobs the loop pauses every assigned partition and
  keeps calling ``poll()`` (which then returns nothing but keeps the group membership alive),
  and resumes when a Job leaves. Intake never blocks the loop: a Job that does not fit the
  first stage's queue waits in a local backlog, counted in flight.
- Rebalances: the rebalance waits inside the revocation callback while the worker stops taking
  records of the revoked partitions, waits (``worker.revoke_grace_s``) for their in-flight Jobs,
  commits synchronously what finished, and abandons the rest: an abandoned Job is never
  produced (it skips its remaining stages) and never committed, so the partition's next owner
  processes it once. A Job already handed to the producer when the grace ends cannot be
  called back: the callback waits (bounded) for its acknowledgement and commits it too. A
  study delivered once thus gives one result even when its partition moves. Lost partitions
  (the membership expired) are abandoned without a commit.
- Shutdown (:meth:`Worker.request_stop`, wired to SIGTERM/SIGINT by ``vcfscreen serve``):
  intake stops, in-flight Jobs get ``worker.drain_grace_s`` to finish, finished work is
  committed, the producer is flushed and the consumer closed.
- A record that cannot be sent after a few attempts stops the worker with an error (exit
  code 1) without committing past it: a process failure, restarted by its supervisor.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections import deque

import requests
from kafka.structs import OffsetAndMetadata

from engine.screen import Screener, Timer
from engine.settings import InferenceBackend, Settings
from streaming.events import PoisonEventError, parse_event
from streaming.fetch import Fetcher, check_location
from streaming.kafka_clients import rebalance_listener
from streaming.metrics import Metrics
from streaming.offsets import OffsetTracker
from streaming.pipeline import Job, Pipeline, RecordRef
from streaming.sinks import KafkaSink
from streaming.stages import PostprocessStage, build_stages

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 3
COMMIT_INTERVAL_S = 0.5
REJOIN_IDLE_S = 20.0
"""Seconds without any partition after the first join before the worker rejoins once (see Worker._rejoin_if_idle)."""
POLL_TIMEOUT_MS = 200
ACK_WAIT_S = 30.0
"""After the revocation grace: how long to wait for Jobs already handed to the producer."""


class WorkerFailure(RuntimeError):
    """The worker cannot go on safely (its output cannot be delivered); the process should exit non-zero."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """Consumer loop + stage pipeline + sink. ``consumer`` and ``producer`` are kafka-python clients
    (or stand-ins with the same methods, for tests)."""

    def __init__(self, settings: Settings, screener: Screener, consumer, producer,
                 metrics: Metrics | None = None, fetcher: Fetcher | None = None):
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.metrics = metrics or Metrics()
        self.worker_id = settings.worker.worker_id or default_worker_id()
        self.tracker = OffsetTracker()
        self.jobs: dict[int, Job] = {}
        self.backlog: deque[Job] = deque()
        self._completions: queue.SimpleQueue = queue.SimpleQueue()
        self._resend: deque[Job] = deque()
        self._send_lock = threading.Lock()
        self._rewind: dict = {}
        """Partition -> first abandoned offset, recorded on revocation, applied if it comes back to us."""
        self.sink = KafkaSink(producer, self.metrics, lambda job, error: self._completions.put((job, error)))
        stages = build_stages(settings, self.metrics, screener, self.worker_id, fetcher)
        self._postprocess = next(s for s in stages if isinstance(s, PostprocessStage))
        self.pipeline = Pipeline(stages, self.metrics, settings.worker.queue_size, finish=self._send)
        self.stopping = False
        self.failure: BaseException | None = None
        self.heartbeat = time.monotonic()
        self.joined = False
        self._idle_since: float | None = None
        """When the worker, never yet assigned a partition, was assigned none (see _rejoin_if_idle)."""
        self._may_rejoin = True
        """Until it has had partitions or has rejoined once."""
        self._broker: tuple[bool, str, float] = (False, "not connected to the broker yet", 0.0)
        self._last_lag = 0.0
        self._last_commit = 0.0
        self._triton_cache: tuple[bool, str, float] = (False, "", 0.0)
        self.polls = 0
        self.poll_timeout_ms = POLL_TIMEOUT_MS
        self.pause_count = 0
        self.resume_count = 0
        self.completed = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Worker:
        self.pipeline.start()
        self._listener = rebalance_listener(self.consumer, self.on_revoked, self.on_assigned, self.on_lost)
        self._subscribe()
        log.info("worker %s consuming %s as group %s (at most %d studies in flight)", self.worker_id,
                 self.settings.kafka.studies_topic, self.settings.kafka.group_id, self.settings.worker.max_in_flight)
        return self

    def request_stop(self) -> None:
        """Stop intake and drain (safe to call from a signal handler)."""
        self.stopping = True

    def run(self) -> None:
        """Serve until :meth:`request_stop`, then drain, commit and close. Raises WorkerFailure."""
        try:
            while not self.stopping and self.failure is None:
                self.step()
            self.drain()
        finally:
            self.close()
        if self.failure is not None:
            raise WorkerFailure(f"worker {self.worker_id} stopped: {self.failure}") from self.failure

    def drain(self) -> None:
        self.stopping = True
        grace = self.settings.worker.drain_grace_s
        deadline = time.monotonic() + grace
        if self.jobs:
            log.info("draining %d in-flight studies (up to %.0f s)", len(self.jobs), grace)
        while self.jobs and time.monotonic() < deadline and self.failure is None:
            self.step()
        if self.jobs:
            unfinished = len(self.jobs)
            for job in list(self.jobs.values()):
                self._cancel(job)
            # Those already handed to the producer will be produced: wait for their acks to commit them.
            ack_deadline = time.monotonic() + ACK_WAIT_S
            while (any(not j.cancelled for j in self.jobs.values()) and time.monotonic() < ack_deadline
                   and self.failure is None):
                self._drain_completions(wait_s=0.1)
            log.warning("%d studies unfinished after %.0f s: not committed, they will be re-delivered",
                        unfinished, grace)
        self._commit(force=True)

    def close(self) -> None:
        self.pipeline.stop(timeout=5.0)
        try:
            self.producer.flush(timeout=10)
        except Exception as exc:  # noqa: BLE001 - closing: nothing left to protect
            log.warning("producer flush at shutdown failed: %s", exc)
        self.producer.close(timeout=10)
        self.consumer.close(autocommit=False)

    # ------------------------------------------------------------------ the loop

    def step(self) -> None:
        """One turn: completions, commits, backpressure, one poll, intake, metrics."""
        self.heartbeat = time.monotonic()
        self._drain_completions()
        self._commit()
        self._feed_pipeline()
        self._backpressure()
        room = self.settings.worker.max_in_flight - len(self.jobs)
        started = time.monotonic()
        batches = self.consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=max(room, 1))
        self.polls += 1
        if not batches:
            # poll() returns at once when every partition is paused or none is assigned: wait
            # for a completion instead of spinning (the CPU belongs to the stages).
            self._drain_completions(wait_s=max(0.0, self.poll_timeout_ms / 1000.0 - (time.monotonic() - started)))
        if batches:
            # Records fetched before a rebalance that happened inside this poll belong to
            # partitions that may now be someone else's: only owned partitions are taken.
            owned = set(self.consumer.assignment())
            for tp, records in batches.items():
                if tp not in owned:
                    log.info("dropping %d records of %s[%d], no longer assigned", len(records), tp.topic, tp.partition)
                    continue
                for record in records:
                    self._intake(tp, record)
        self._feed_pipeline()
        self._rejoin_if_idle()
        self._refresh_lag()
        self._update_gauges()

    def _rejoin_if_idle(self) -> None:
        """Rejoin the group once if the first assignment was empty and stayed so for
        ``REJOIN_IDLE_S``.

        A worker started right after a broker restart may join before it knows the topic's
        partitions: it is assigned nothing, and kafka-python 3 was seen not to rejoin when the
        metadata arrived (make demo waited 300 s, 2 runs of 3 from a stopped stack). Leaving
        and joining again makes the group rebalance with the metadata known. Once per process,
        and never after the worker has had partitions, so a group with more workers than
        partitions pays one extra rebalance per idle worker at most."""
        if not self._may_rejoin or self._idle_since is None or time.monotonic() - self._idle_since < REJOIN_IDLE_S:
            return
        self._may_rejoin = False
        self._idle_since = None
        log.warning("no partition assigned %.0f s after joining: leaving and joining the group again", REJOIN_IDLE_S)
        self.consumer.unsubscribe()
        self._subscribe()

    def _subscribe(self) -> None:
        self.consumer.subscribe([self.settings.kafka.studies_topic], listener=self._listener)

    def _intake(self, tp, record) -> None:
        ref = RecordRef(record.topic, record.partition, record.offset, record.key, record.value)
        try:
            event = parse_event(record.key, record.value)
            check_location(event, self.settings.pacs)
        except PoisonEventError as exc:
            job = Job(ref, None, timer=Timer(), tp=tp)
            job.error = exc
            self.jobs[job.id] = job
            self.tracker.add(tp, record.offset, job.id)
            log.warning("record %s[%d]@%d dead-lettered: %s", record.topic, record.partition, record.offset, exc)
            self._postprocess.process(job)
            self._send(job)
            return
        job = Job(ref, event, timer=Timer(), tp=tp)
        self.jobs[job.id] = job
        self.tracker.add(tp, record.offset, job.id)
        self.backlog.append(job)

    def _send(self, job: Job) -> None:
        """The pipeline's exit (a stage thread) and the poison path: hand the Job to the sink,
        unless it was cancelled first. Once handed over it cannot be cancelled any more."""
        with self._send_lock:
            if not job.cancelled:
                job.sending = True
        self.sink.send(job)  # a cancelled Job produces nothing and just reports back

    def _cancel(self, job: Job) -> bool:
        """Abandon a Job: it will produce nothing. False when it was already handed to the sink."""
        with self._send_lock:
            if job.sending:
                return False
            job.cancelled = True
            return True

    def _feed_pipeline(self) -> None:
        while self.backlog:
            job = self.backlog[0]
            if job.cancelled:
                self.backlog.popleft()
                self.jobs.pop(job.id, None)
                continue
            try:
                self.pipeline.submit(job, timeout=0)
            except queue.Full:
                return
            self.backlog.popleft()

    def _drain_completions(self, wait_s: float = 0.0) -> None:
        while self._resend:
            self.sink.send(self._resend.popleft())
        first = True
        while True:
            try:
                job, error = self._completions.get(timeout=wait_s) if first and wait_s else self._completions.get_nowait()
            except queue.Empty:
                return
            first = False
            if error is not None:
                self._send_failed(job, error)
            else:
                self._finished(job)

    def _send_failed(self, job: Job, error: BaseException) -> None:
        job.send_attempts += 1
        if job.send_attempts < SEND_ATTEMPTS:
            log.warning("%s: output not acknowledged by the broker (%s: %s); sending again",
                        job.ref, type(error).__name__, error)
            self._resend.append(job)
            return
        self.failure = error
        log.error("%s: output not acknowledged after %d attempts (%s: %s); stopping without committing it",
                  job.ref, SEND_ATTEMPTS, type(error).__name__, error)

    def _finished(self, job: Job) -> None:
        self.jobs.pop(job.id, None)
        if not job.sent:
            if job.cancelled:
                return  # abandoned on revocation or shutdown: re-delivered, nothing was produced
            # No record was built for this study (a bug in postprocess): it still leaves one.
            job.outputs = [self._postprocess.letter(job, "internal", f"no output was built ({job.error!r})")]
            self.jobs[job.id] = job
            self._resend.append(job)
            return
        if not job.cancelled:
            self.tracker.done(job.tp, job.record.offset, job.id)
        self.completed += 1
        m = self.metrics
        m.studies.labels(outcome=job.outcome or "error").inc()
        m.study_seconds.observe(time.monotonic() - job.intake)
        for record in job.outputs:
            if record.kind == "dead_letter":
                m.dead_letters.labels(code=record.code or "unknown").inc()
            elif record.code is not None:  # a result without a screening
                m.not_screened.labels(code=record.code).inc()
        result = job.output.result if job.output is not None else None
        if result is not None and result.status == "ok":
            for vertebra in result.vertebrae:
                m.findings.labels(grade=str(vertebra.genant_grade)).inc()
        log.info("%s: %s in %.1f s", job.ref, job.outcome, time.monotonic() - job.intake)

    def _commit(self, force: bool = False, only=None) -> bool:
        """Commit the finished prefix of each partition (``only``: of these). False if the commit failed."""
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_INTERVAL_S:
            return True
        offsets = self.tracker.committable()
        if only is not None:
            offsets = {tp: o for tp, o in offsets.items() if tp in only}
        if not offsets:
            return True
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except Exception as exc:  # noqa: BLE001 - a failed commit is retried; the records are re-delivered at worst
            log.warning("offset commit failed (%s: %s); will retry", type(exc).__name__, exc)
            return False
        self._last_commit = now
        self.tracker.mark_committed(offsets)
        return True

    def _backpressure(self) -> None:
        assigned = set(self.consumer.assignment())
        paused = set(self.consumer.paused())
        full = self.stopping or len(self.jobs) >= self.settings.worker.max_in_flight
        if full and assigned - paused:
            self.consumer.pause(*(assigned - paused))
            self.pause_count += 1
        elif not full and paused:
            self.consumer.resume(*paused)
            self.resume_count += 1

    # ------------------------------------------------------------------ rebalances

    def on_assigned(self, assigned) -> None:
        self.joined = True
        if assigned:
            self._idle_since = None
            self._may_rejoin = False  # it has had partitions: an empty assignment later is the group's choice
        elif self._may_rejoin and self._idle_since is None:
            self._idle_since = time.monotonic()
        # A partition that comes back to this consumer may keep the client's fetch position, past
        # the records abandoned on revocation: start it again from the first abandoned one.
        seek = getattr(self.consumer, "seek", None)
        for tp in set(assigned) & set(self._rewind):
            if seek is not None:
                seek(tp, self._rewind[tp])
                log.info("%s[%d] resumes at offset %d (abandoned on revocation)", tp.topic, tp.partition,
                         self._rewind[tp])
        self._rewind.clear()
        log.info("assigned partitions: %s", _partitions_text(assigned))
        if assigned and (self.stopping or len(self.jobs) >= self.settings.worker.max_in_flight):
            self.consumer.pause(*assigned)
            self.pause_count += 1

    def on_revoked(self, revoked) -> None:
        """Called by the consumer before a rebalance (the rebalance waits for it to return).

        Finish or abandon the in-flight studies of ``revoked``, commit what finished, and make
        sure nothing of these partitions is produced afterwards (their next owner takes over
        from the commit)."""
        revoked = set(revoked)
        if not revoked:
            return
        started = time.monotonic()
        for job in [j for j in self.backlog if j.tp in revoked]:
            self._cancel(job)  # not started yet: nothing to wait for
        self._feed_pipeline()
        deadline = started + self.settings.worker.revoke_grace_s
        while self.failure is None:
            pending = self._pending_in(revoked)
            if not pending:
                break
            if time.monotonic() >= deadline:
                # Abandon what the sink has not taken; what it has will be produced: wait for its ack.
                for job in pending:
                    self._cancel(job)
                if not self._pending_in(revoked) or time.monotonic() >= deadline + ACK_WAIT_S:
                    break
            self.heartbeat = time.monotonic()
            self._drain_completions(wait_s=0.1)
        committed = self._commit(force=True, only=revoked)
        self._remember_rewind(revoked)
        abandoned = set(self.tracker.forget(revoked))
        produced_anyway = 0
        for job in self.jobs.values():
            if job.id in abandoned and not self._cancel(job):
                produced_anyway += 1
        if not committed:
            log.error("partitions %s revoked and their finished studies could not be committed: their next "
                      "owner will produce them again", _partitions_text(revoked))
        if abandoned:
            log.warning("partitions %s revoked with %d studies unfinished after %.0f s: abandoned, their next "
                        "owner processes them%s", _partitions_text(revoked), len(abandoned),
                        self.settings.worker.revoke_grace_s,
                        f" ({produced_anyway} already sent: produced twice)" if produced_anyway else "")
        for tp in revoked:
            try:
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass  # no lag was reported for it yet
        log.info("revoked partitions: %s (in %.1f s)", _partitions_text(revoked), time.monotonic() - started)

    def on_lost(self, lost) -> None:
        """The group membership was lost: ``lost`` already belongs to others. Nothing can be
        committed; everything of these partitions not yet handed to the producer is abandoned."""
        lost = set(lost)
        if not lost:
            return
        self._remember_rewind(lost)
        abandoned = set(self.tracker.forget(lost))
        for job in list(self.jobs.values()):
            if job.tp in lost:
                self._cancel(job)
        self._feed_pipeline()
        log.warning("partitions %s lost (membership expired): %d unfinished studies abandoned",
                    _partitions_text(lost), len(abandoned))

    def _remember_rewind(self, partitions) -> None:
        for tp in partitions:
            first = self.tracker.first_pending(tp)
            if first is not None:
                self._rewind[tp] = first

    def _pending_in(self, partitions) -> list[Job]:
        return [j for j in self.jobs.values() if not j.cancelled and j.tp in partitions]

    # ------------------------------------------------------------------ observability

    def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < self.settings.worker.lag_refresh_s:
            return
        self._last_lag = now
        try:
            assigned = list(self.consumer.assignment())
            if assigned:
                ends = self.consumer.end_offsets(assigned)
                for tp in assigned:
                    try:
                        position = self.consumer.position(tp, timeout_ms=1000)
                    except Exception as exc:  # noqa: BLE001 - no position yet (just assigned): next refresh
                        log.debug("no position for %s[%d] yet: %s", tp.topic, tp.partition, exc)
                        continue
                    if position is not None and tp in ends:
                        self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                            max(0, ends[tp] - position))
            else:
                self.consumer.topics()  # a metadata round trip: is the broker there?
            self._broker = (True, "broker reachable", now)
        except Exception as exc:  # noqa: BLE001 - reported by /readyz, retried next refresh
            self._broker = (False, f"broker check failed: {type(exc).__name__}: {exc}", now)

    def _update_gauges(self) -> None:
        m = self.metrics
        m.in_flight.set(len(self.jobs))
        depths = self.pipeline.depths()
        depths["fetch"] = depths.get("fetch", 0) + len(self.backlog)
        for stage, depth in depths.items():
            m.queue_depth.labels(stage=stage).set(depth)
        m.queue_depth.labels(stage="produce").set(self.sink.outstanding)

    def live(self) -> tuple[bool, str]:
        idle = time.monotonic() - self.heartbeat
        if idle > self.settings.worker.stall_after_s:
            return False, f"consumer loop stalled for {idle:.0f} s"
        return True, f"alive; {len(self.jobs)} studies in flight"

    def ready(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "stopping"
        if not self.joined:
            return False, "waiting for a partition assignment"
        ok, detail, at = self._broker
        if not ok or time.monotonic() - at > 3 * self.settings.worker.lag_refresh_s + 5:
            return False, detail if not ok else "broker check is stale"
        if self.settings.models.backend == InferenceBackend.TRITON:
            triton_ok, triton_detail = self._triton_ready()
            if not triton_ok:
                return False, triton_detail
        return True, "ready"

    def _triton_ready(self) -> tuple[bool, str]:
        ok, detail, at = self._triton_cache
        if time.monotonic() - at < 2.0:
            return ok, detail
        url = f"http://{self.settings.triton.http_url}/v2/health/ready"
        try:
            status = requests.get(url, timeout=1.0).status_code
            ok, detail = status == 200, f"Triton at {self.settings.triton.http_url} answered {status}"
        except requests.RequestException as exc:
            ok, detail = False, f"Triton at {self.settings.triton.http_url} unreachable ({type(exc).__name__})"
        self._triton_cache = (ok, detail, time.monotonic())
        return ok, detail


def _partitions_text(partitions) -> str:
    items = sorted((tp.topic, tp.partition) for tp in partitions)
    return ", ".join(f"{topic}[{partition}]" for topic, partition in items) or "none"
