"""Infer stage: the Screener's backend on the model input; inference outages retried within the bound."""

from __future__ import annotations

import pytest
from streaming_fakes import StandInBackend, make_job, make_settings

from engine.errors import TransientError
from engine.screen import Screener
from streaming.metrics import Metrics
from streaming.stages import InferStage, LoadStage, PreprocessStage


def ready_job(screener, folder, uid):
    job = make_job(folder, uid)
    job.source = folder
    LoadStage(screener.settings).process(job)
    PreprocessStage(screener).process(job)
    return job


def test_inference_gives_a_result_for_the_study(study_folders):
    settings = make_settings()
    backend = StandInBackend()
    screener = Screener(settings, backend=backend)
    job = ready_job(screener, *study_folders[0])
    stage = InferStage(settings, Metrics(), screener)
    stage.process(job)
    result = job.output.result
    assert result.status == "ok" and result.study_instance_uid == study_folders[0][1]
    assert result.pipeline_version.endswith("vertebra_cls stand-in")
    assert {"load", "preprocess", "segment", "postprocess"} <= set(result.timings_ms)
    split = stage.split(job, 10.0)
    assert split["infer"] + split.get("postprocess", 0.0) == pytest.approx(10.0)


def test_an_outage_shorter_than_the_bound_only_delays(study_folders):
    settings = make_settings(max_retries=3)
    backend = StandInBackend()
    screener = Screener(settings, backend=backend)
    job = ready_job(screener, *study_folders[0])
    metrics = Metrics()
    backend.transient_failures = 3
    InferStage(settings, metrics, screener).process(job)
    assert job.output.result.status == "ok"
    assert backend.calls == 4 and metrics.retries.labels(stage="infer")._value.get() == 3
    backend.transient_failures = 4
    with pytest.raises(TransientError, match="gave up after 3 retries in infer"):
        InferStage(settings, metrics, screener).process(job)
