"""The stage machinery: connections checked at build time, failures carried to the exit, retries bounded."""

from __future__ import annotations

import threading

import pytest
from streaming_fakes import make_job

from engine.errors import CorruptStudyError, TransientError
from streaming.metrics import Metrics
from streaming.pipeline import Pipeline, PipelineError, Stage, retry_transient


class Provide(Stage):
    def __init__(self, name, requires=(), provides=(), fail=None, on_failed=False):
        self.name, self.requires, self.provides = name, requires, provides
        self.fail, self.runs_on_failed, self.seen = fail, on_failed, []

    def process(self, job):
        self.seen.append(job.id)
        if self.fail is not None:
            raise self.fail
        for attribute in self.provides:
            setattr(job, attribute, self.name)


def test_a_stage_whose_input_nobody_provides_is_refused_at_build_time():
    stages = [Provide("fetch", ("event",), ("source",)), Provide("infer", ("model_input",), ("output",))]
    with pytest.raises(PipelineError, match="stage 'infer' requires model_input, which no earlier stage provides"):
        Pipeline(stages, Metrics(), 1, finish=lambda job: None)


def test_a_failed_job_skips_the_work_but_reaches_the_exit():
    done, finished = [], threading.Event()
    first = Provide("fetch", ("event",), ("source",), fail=CorruptStudyError("slice 3 is empty"))
    middle = Provide("load", ("source",), ("loaded",))
    last = Provide("postprocess", ("loaded",), ("outputs",), on_failed=True)
    pipeline = Pipeline([first, middle, last], Metrics(), 1, finish=lambda job: (done.append(job), finished.set()))
    pipeline.start()
    job = make_job()
    pipeline.submit(job)
    assert finished.wait(5)
    pipeline.stop()
    assert done == [job] and isinstance(job.error, CorruptStudyError) and job.failed_stage == "fetch"
    assert middle.seen == [] and last.seen == [job.id]
    assert set(job.stage_ms) == {"fetch", "postprocess"}


def test_an_unexpected_exception_fails_the_study_not_the_thread():
    done = []
    boom = Provide("fetch", ("event",), ("source",), fail=KeyError("bug"))
    pipeline = Pipeline([boom], Metrics(), 1, finish=done.append).start()
    for _ in range(2):
        pipeline.submit(make_job())
    pipeline.stop()
    assert len(done) == 2 and all(isinstance(j.error, KeyError) for j in done)


def test_retry_backs_off_exponentially_and_gives_up_at_the_bound():
    metrics, delays, calls = Metrics(), [], []

    def action():
        calls.append(1)
        raise TransientError("HTTP 503")

    with pytest.raises(TransientError, match="gave up after 3 retries in fetch"):
        retry_transient(action, stage="fetch", job=make_job(), metrics=metrics, max_retries=3,
                        backoff_s=0.5, backoff_max_s=1.5, sleep=delays.append)
    assert len(calls) == 4 and delays == [0.5, 1.0, 1.5]
    assert metrics.retries.labels(stage="fetch")._value.get() == 3


def test_retry_does_not_retry_permanent_errors():
    calls = []

    def action():
        calls.append(1)
        raise CorruptStudyError("bad")

    with pytest.raises(CorruptStudyError):
        retry_transient(action, stage="fetch", job=make_job(), metrics=Metrics(), max_retries=3,
                        backoff_s=0.01, backoff_max_s=0.01, sleep=lambda s: None)
    assert len(calls) == 1
