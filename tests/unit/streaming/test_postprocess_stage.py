"""Postprocess stage: what each outcome produces (result, dead letter, both), and result determinism."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from streaming_fakes import StandInBackend, make_job, make_settings

from engine.errors import CorruptStudyError, NotEligibleError, TransientError
from engine.results import ScreeningResult
from engine.screen import Screener
from streaming.dlq import original_value
from streaming.events import PoisonEventError
from streaming.metrics import Metrics
from streaming.stages import (
    InferStage,
    LoadStage,
    PostprocessStage,
    PreprocessStage,
    StudyMismatchError,
)

UID = "1.2.826.0.1.3680043.8.498.4242"


@pytest.fixture(scope="module")
def screener():
    return Screener(make_settings(), backend=StandInBackend())


def screened(screener, folder, uid):
    job = make_job(folder, uid)
    job.source = folder
    settings = screener.settings
    stages = (LoadStage(settings), PreprocessStage(screener), InferStage(settings, Metrics(), screener))
    for stage in stages:
        stage.process(job)
    PostprocessStage(screener.settings, screener, "w-1").process(job)
    return job


def failed(screener, error, value=None):
    job = make_job(Path("/data/study"), UID, value=value or b"{}")
    job.error = error
    PostprocessStage(make_settings(), screener, "w-1").process(job)
    return job


def test_an_ok_study_gives_one_result_keyed_by_uid(screener, study_folders):
    folder, uid = study_folders[0]
    job = screened(screener, folder, uid)
    (record,) = job.outputs
    assert job.outcome == "ok" and record.kind == "result" and record.topic == "ct.vcf.results"
    assert record.key == uid.encode()
    assert ScreeningResult.from_json(record.value).status == "ok"
    headers = dict(record.headers)
    assert headers["vcfscreen-worker"] == b"w-1" and float(headers["vcfscreen-latency-ms"]) > 0
    assert set(json.loads(headers["vcfscreen-stage-ms"])) >= {"queued"}
    assert job.loaded is None and job.model_input is None, "pixels are released once the records exist"


def test_a_redelivered_study_gives_the_same_key_and_value_but_timings(screener, study_folders):
    folder, uid = study_folders[1]
    first, second = screened(screener, folder, uid).outputs[0], screened(screener, folder, uid).outputs[0]
    assert first.key == second.key
    a, b = json.loads(first.value), json.loads(second.value)
    assert set(a.pop("timings_ms")) == set(b.pop("timings_ms"))
    assert a == b


@pytest.mark.parametrize("error, outcome, kinds, code", [
    (NotEligibleError("no axial CT series"), "not_eligible", ["result"], None),
    (CorruptStudyError("0010.dcm: the pixel data cannot be decoded"), "error", ["result", "dead_letter"], "corrupt"),
    (KeyError("bug"), "error", ["result", "dead_letter"], "internal"),
    (TransientError("PACS unreachable (gave up after 4 retries)"), "dead_letter", ["dead_letter"], "transient"),
    (StudyMismatchError("the event names a, its images b"), "dead_letter", ["dead_letter"], "uid_mismatch"),
    (PoisonEventError("invalid_json", "not JSON"), "dead_letter", ["dead_letter"], "invalid_json"),
])
def test_each_failure_leaves_its_records(screener, error, outcome, kinds, code):
    job = failed(screener, error)
    assert job.outcome == outcome
    assert [r.kind for r in job.outputs] == kinds
    if "result" in kinds:
        result = ScreeningResult.from_json(job.outputs[0].value)
        assert result.status == outcome and result.study_instance_uid == UID and result.reason.startswith(
            code or "not_eligible")
    if code:
        letter = json.loads(job.outputs[-1].value)
        assert job.outputs[-1].topic == "ct.studies.dlq" and job.outputs[-1].code == code
        assert letter["code"] == code and letter["original"] == {
            "topic": "ct.studies", "partition": 0, "offset": 7, "key": UID, "value_text": "{}"}
        assert letter["worker_id"] == "w-1" and letter["time"].endswith("+00:00")


def test_binary_originals_are_kept_in_base64(screener):
    value = b"\x00\xffbinary"
    job = failed(screener, PoisonEventError("invalid_json", "the record value is not UTF-8 text"), value=value)
    letter = json.loads(job.outputs[0].value)
    assert letter["original"]["value_base64"] == base64.b64encode(value).decode()
    assert original_value(letter) == value


class FakeStore:
    def __init__(self):
        self.stored = []

    def store(self, datasets):
        self.stored += list(datasets)


def test_write_back_stores_one_sr_per_study_with_stable_uids(study_folders):
    from engine.report.sr import SourceSeries
    from engine.results import VertebraFinding
    from engine.screen import StudyOutput
    from engine.settings import Settings

    folder, uid = study_folders[2]
    settings = Settings(pacs={"write_back": True}, worker={"worker_id": "w-1"})
    screener = Screener(settings, backend=StandInBackend())
    job = make_job(folder, uid)
    job.source = folder
    LoadStage(settings).process(job)
    series = job.loaded.series_instance_uid
    finding = VertebraFinding(level="L1", centroid_lps_mm=(1.0, 2.0, -300.0), fracture_probability=0.9,
                              genant_grade=3, height_loss=0.45)
    result = ScreeningResult.from_findings(uid, series, [finding], pipeline_version=screener.pipeline_version,
                                           grading=settings.grading)
    store = FakeStore()
    stage = PostprocessStage(settings, screener, "w-1", dicomweb=store)
    for _ in range(2):  # the same study delivered twice
        job.output, job.sr_source = StudyOutput(result=result), SourceSeries.from_folder(folder, series)
        stage.process(job)
    first, second = store.stored
    assert first.Modality == "SR" and first.StudyInstanceUID == uid
    assert (first.SeriesInstanceUID, first.SOPInstanceUID) == (second.SeriesInstanceUID, second.SOPInstanceUID)
    assert [r.kind for r in job.outputs] == ["result"]
