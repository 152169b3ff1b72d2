"""The worker's stages: fetch -> load -> preprocess -> infer -> postprocess (then the Kafka sink).

Each is a thin adapter over the screening core (:mod:`engine.screen`, :mod:`engine.dicom`,
:mod:`engine.preprocess`): it reads the Job attributes it ``requires`` and sets those it
``provides``. The expensive parts (DALI pipeline, inference backend) are the Screener's,
built once and shared. A failure of one study raises its typed :class:`StudyError`, which
the pipeline records on the Job; :class:`PostprocessStage` turns what the Job became into
records: a result, a dead-letter record, or both.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydicom.uid import generate_uid

from engine.dicom import load_study
from engine.errors import NotEligibleError, StudyError, TransientError
from engine.logs import study_ref
from engine.results import ScreeningResult
from engine.screen import Screener
from engine.settings import Settings
from streaming.dlq import DeadLetter
from streaming.events import PoisonEventError
from streaming.fetch import Fetcher
from streaming.metrics import Metrics
from streaming.pipeline import Job, Stage, retry_transient
from streaming.sinks import dead_letter_record, result_record

log = logging.getLogger(__name__)


class StudyMismatchError(StudyError):
    """The study read is not the study the event names (the event is wrong: dead-lettered)."""

    code = "uid_mismatch"


class _Retrying(Stage):
    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics

    def _retry(self, action, job: Job):
        worker = self.settings.worker
        return retry_transient(
            action, stage=self.name, job=job, metrics=self.metrics, max_retries=worker.max_retries,
            backoff_s=worker.retry_backoff_s, backoff_max_s=worker.retry_backoff_max_s,
            cancelled=lambda: job.cancelled,
        )


class FetchStage(_Retrying):
    """event -> source: the study folder, or its instances over WADO-RS (transient failures retried)."""

    name = "fetch"
    requires = ("event",)
    provides = ("source",)

    def __init__(self, settings: Settings, metrics: Metrics, fetcher: Fetcher | None = None):
        super().__init__(settings, metrics)
        self.fetcher = fetcher or Fetcher(settings.pacs)
        self.threads = settings.worker.fetch_threads

    def process(self, job: Job) -> None:
        job.source = self._retry(lambda: self.fetcher.fetch(job.event), job)


class LoadStage(Stage):
    """source -> loaded: the screening series chosen and decoded to an HU volume with its geometry."""

    name = "load"
    requires = ("source",)
    provides = ("loaded", "sr_source")

    def __init__(self, settings: Settings):
        self.settings = settings

    def process(self, job: Job) -> None:
        with job.timer.stage("load"):
            loaded = load_study(job.source, self.settings.selection)
        if loaded.study_instance_uid != job.uid:
            raise StudyMismatchError(
                f"the event names {job.ref} but its images belong to {study_ref(loaded.study_instance_uid)}"
            )
        if self.settings.pacs.write_back:
            job.sr_source = _source_series(job.source, loaded.series_instance_uid)
        job.loaded = loaded
        job.source = None  # the instances (pixels included) are no longer needed


def _source_series(source, series_instance_uid: str):
    from engine.report.sr import SourceSeries

    if isinstance(source, (str, Path)):
        return SourceSeries.from_folder(source, series_instance_uid)
    return SourceSeries.from_datasets(source, series_instance_uid)


class PreprocessStage(Stage):
    """loaded -> model_input: the DALI pipeline (reorient, resample, window, pad), built once."""

    name = "preprocess"
    requires = ("loaded",)
    provides = ("model_input",)

    def __init__(self, screener: Screener):
        self.preprocessor = screener.preprocessor

    def process(self, job: Job) -> None:
        with job.timer.stage("preprocess"):
            (made,) = self.preprocessor.run_each([job.loaded.volume])
        if isinstance(made, StudyError):
            raise made
        job.model_input = made


class InferStage(_Retrying):
    """model_input -> output: segmentation, levels, crops, classification, findings (the Screener's backend)."""

    name = "infer"
    requires = ("loaded", "model_input")
    provides = ("output",)
    _MODEL_TIMERS = ("segment", "classify", "infer")

    def __init__(self, settings: Settings, metrics: Metrics, screener: Screener):
        super().__init__(settings, metrics)
        self.screener = screener
        self.threads = settings.worker.infer_threads

    def process(self, job: Job) -> None:
        volume, model_input = job.loaded.volume, job.model_input
        job.output = self._retry(lambda: self.screener.screen_model_input(volume, model_input, job.timer), job)

    def split(self, job: Job, seconds: float) -> dict[str, float]:
        """Model time as ``infer``, the findings (levels, heights, grades) as ``postprocess``."""
        timings = job.timer.ms if job.timer is not None else {}
        model_ms = sum(timings.get(name, 0.0) for name in self._MODEL_TIMERS)
        post = max(0.0, seconds - model_ms / 1000.0) if job.output is not None else 0.0
        return {"infer": seconds - post, "postprocess": post} if post else {"infer": seconds}


class PostprocessStage(Stage):
    """What the Job became -> outputs: a result, a dead-letter record or both; optional key image and SR."""

    name = "postprocess"
    requires = ("output",)
    provides = ("outputs", "outcome")
    runs_on_failed = True

    def __init__(self, settings: Settings, screener: Screener, worker_id: str, dicomweb=None):
        self.settings = settings
        self.screener = screener
        self.worker_id = worker_id
        self._dicomweb = dicomweb

    def process(self, job: Job) -> None:
        kafka = self.settings.kafka
        if job.error is None:
            result = job.output.result
            job.outcome = result.status
            job.outputs = [result_record(kafka.results_topic, result, job, self.worker_id)]
            if result.status == "ok":
                self._side_outputs(job)
        else:
            self._failed(job, job.error)
        job.release_pixels()
        if job.output is not None:
            job.output.volume = job.output.model_input = job.output.class_map = None

    def _failed(self, job: Job, error: BaseException) -> None:
        kafka = self.settings.kafka
        timings = dict(job.timer.ms) if job.timer is not None else {}
        if isinstance(error, (PoisonEventError, StudyMismatchError, TransientError)):
            job.outcome = "dead_letter"
            job.outputs = [self.letter(job, error.code, error.message)]
            return
        uid = job.uid or "unknown"
        result = ScreeningResult.from_exception(
            uid, error, pipeline_version=self.screener.pipeline_version, timings_ms=timings,
            series_instance_uid=job.loaded.series_instance_uid if job.loaded is not None else None,
        )
        job.outcome = result.status
        job.outputs = [result_record(kafka.results_topic, result, job, self.worker_id)]
        if not isinstance(error, NotEligibleError):
            code = error.code if isinstance(error, StudyError) else "internal"
            job.outputs.append(self.letter(job, code, result.reason or code))

    def letter(self, job: Job, code: str, message: str):
        record = job.record
        letter = DeadLetter(
            code=code, message=message, topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, value=record.value, worker_id=self.worker_id, study_instance_uid=job.uid,
        )
        return dead_letter_record(self.settings.kafka.dlq_topic, letter, job)

    def _side_outputs(self, job: Job) -> None:
        """Key image and SR write-back: a failure is logged, never fails the study."""
        result = job.output.result
        folder = self.settings.worker.key_images_dir
        if folder is not None and job.output.model_input is not None:
            try:
                from engine.report.keyimage import key_image_path, render_key_image

                render_key_image(result, job.output.model_input, key_image_path(Path(folder), result))
            except Exception as exc:  # noqa: BLE001 - a side output must not stop the study
                log.warning("%s: key image not written: %s: %s", job.ref, type(exc).__name__, exc)
        if self.settings.pacs.write_back and job.sr_source is not None and result.vertebrae:
            try:
                self._write_back(job)
            except Exception as exc:  # noqa: BLE001 - the result is delivered even if the PACS refuses the SR
                log.warning("%s: SR not stored to the PACS: %s: %s", job.ref, type(exc).__name__, exc)

    def _write_back(self, job: Job) -> None:
        from engine.report.sr import build_sr
        from streaming.dicomweb import DicomWeb

        result = job.output.result
        # UIDs derived from the study and pipeline version: a re-delivered study stores the
        # same SR instance again instead of a second report.
        seed = [result.study_instance_uid, result.pipeline_version, "vcfscreen-sr"]
        sr = build_sr(
            result, job.sr_source,
            series_instance_uid=generate_uid(entropy_srcs=seed + ["series"]),
            sop_instance_uid=generate_uid(entropy_srcs=seed + ["instance"]),
        )
        if self._dicomweb is None:
            self._dicomweb = DicomWeb(self.settings.pacs)
        self._dicomweb.store([sr])


def build_stages(settings: Settings, metrics: Metrics, screener: Screener, worker_id: str,
                 fetcher: Fetcher | None = None) -> list[Stage]:
    return [
        FetchStage(settings, metrics, fetcher),
        LoadStage(settings),
        PreprocessStage(screener),
        InferStage(settings, metrics, screener),
        PostprocessStage(settings, screener, worker_id),
    ]
